"""medview starts on the real ``xcb`` platform under Xvfb (not offscreen).

The offscreen platform (used by every other GUI test) needs far fewer system libraries
than a real X11 window: the xcb plugin aborts the process (SIGABRT) when e.g.
``libxcb-icccm.so.4`` is missing, which the offscreen tests never see. These tests
start a private Xvfb on a free display, run medview with ``QT_QPA_PLATFORM=xcb`` and
check (1) the window's own screenshot and (2) a capture of the X server's root window
while the plain ``medview`` command (the README's start command) is running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SCREEN = (1600, 1200)  # larger than the main window's 1400x880
START_TIMEOUT_S = 120.0

# Captures the X server's root window through the xcb platform (no xwd/ImageMagick needed).
GRAB_ROOT = """
import sys
from PySide6.QtGui import QGuiApplication
app = QGuiApplication(sys.argv[:1])
ok = app.primaryScreen().grabWindow(0).toImage().save(sys.argv[1], "PNG")
sys.exit(0 if ok else 3)
"""


def start_xvfb(width: int, height: int) -> tuple[subprocess.Popen, str]:
    """Start Xvfb on a free display (``-displayfd``); return the process and ``:N``."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            f"{width}x{height}x24",
            "-nolisten",
            "tcp",
            "-br",  # black root window: anything not black was drawn by a client
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        number = f.readline().strip()
    if not number.isdigit():
        proc.kill()
        err = proc.communicate(timeout=10)[1].decode(errors="replace").strip()
        pytest.fail(f"Xvfb did not start: {err.splitlines()[-1] if err else 'no display number'}")
    return proc, f":{number}"


def stop(proc: subprocess.Popen, timeout: float) -> None:
    """Terminate ``proc``; kill it when it has not exited after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def xvfb_display() -> Iterator[str]:
    """A private Xvfb server; skips when Xvfb is not installed."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    proc, display = start_xvfb(*SCREEN)
    try:
        yield display
    finally:
        stop(proc, 10)


def xcb_env(display: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a child on the real xcb platform of ``display``."""
    env = dict(os.environ)
    env.pop("WAYLAND_DISPLAY", None)
    env.update(
        DISPLAY=display,
        QT_QPA_PLATFORM="xcb",
        MEDVIEW_HOME=str(tmp_path / "home"),
        XDG_RUNTIME_DIR=str(tmp_path),
        OMP_NUM_THREADS="1",
    )
    env.pop("MEDVIEW_DB", None)
    return env


def describe_exit(rc: int) -> str:
    """``rc`` in words (a negative status is a signal: SIGABRT from Qt is -6)."""
    if rc < 0:
        import signal

        return f"killed by {signal.Signals(-rc).name}"
    return f"exit {rc}"


def drawn_box(img: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of the non-black pixels of an RGB capture."""
    mask = img.max(axis=2) > 0
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_screenshot_on_xcb(xvfb_display, tmp_path):
    """``medview --screenshot`` on xcb writes the window (1600x960), not a blank image."""
    out = tmp_path / "xcb.png"
    p = subprocess.run(
        [sys.executable, "-m", "medview", "--screenshot", str(out)],
        cwd=tmp_path,
        env=xcb_env(xvfb_display, tmp_path),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert p.returncode == 0, f"medview on xcb: {describe_exit(p.returncode)}\n{p.stderr[-3000:]}"
    assert "Could not load the Qt platform plugin" not in p.stderr, p.stderr
    from medview.ui.app import SCREENSHOT_SIZE

    img = np.asarray(Image.open(out).convert("RGB"))
    assert (img.shape[1], img.shape[0]) == SCREENSHOT_SIZE
    grey = img.mean(axis=2)
    assert grey.std() > 10.0, f"screenshot nearly uniform (std {grey.std():.1f})"
    # the dark theme's window colour covers most of it; text and frames make the rest
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20


def test_window_appears_on_the_x_display(xvfb_display, tmp_path):
    """The README start command (``medview``, no arguments) maps a real window on X."""
    env = xcb_env(xvfb_display, tmp_path)
    app = subprocess.Popen(
        [sys.executable, "-m", "medview"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    shot = tmp_path / "root.png"
    box = None
    img = None
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            time.sleep(1.0)
            if app.poll() is not None:
                err = app.communicate()[1]
                pytest.fail(f"medview on xcb ended: {describe_exit(app.returncode)}\n{err[-3000:]}")
            g = subprocess.run(
                [sys.executable, "-c", GRAB_ROOT, str(shot)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert g.returncode == 0, f"root capture: {describe_exit(g.returncode)} {g.stderr}"
            img = np.asarray(Image.open(shot).convert("RGB"))
            box = drawn_box(img)
            # the main window asks for 1400x880; wait until it is drawn
            if box and box[2] - box[0] >= 1000 and box[3] - box[1] >= 600:
                inside = img[box[1] : box[3], box[0] : box[2]].mean(axis=2)
                if inside.std() > 10.0:
                    break
        else:
            pytest.fail(f"no medview window on {xvfb_display} after {START_TIMEOUT_S:.0f} s: {box}")
    finally:
        if app.poll() is None:
            stop(app, 20)
    assert img is not None and box is not None
    assert (img.shape[1], img.shape[0]) == SCREEN
    w, h = box[2] - box[0], box[3] - box[1]
    assert 1000 <= w < SCREEN[0] and 600 <= h < SCREEN[1], f"drawn area {w}x{h}"
    inside = img[box[1] : box[3], box[0] : box[2]]
    assert len(np.unique(inside.reshape(-1, 3), axis=0)) > 20
