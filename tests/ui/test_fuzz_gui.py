"""The GUI survives hostile files (issue 18 targets): a folder of fuzz mutants opened in
the real app (``medview FOLDER --screenshot``, Qt offscreen, in a subprocess) ends with a
written screenshot and one-line problems, never a crash, a traceback or a hang; the slow
variant opens every mutant alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fuzz.mutants import mutants

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("PySide6")


def _write(items, folder: Path) -> int:
    made = 0
    for m in items:
        sub = folder / m.name
        sub.mkdir()
        try:
            m.make(sub)
            made += 1
        except TypeError:  # pydicom cannot write a few edits of a few fuzz_sources
            continue
    return made


def _open(path: Path, shot: Path, home: Path, timeout: float) -> tuple[int, str, float]:
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        QT_QPA_PLATFORM="offscreen",
        MEDVIEW_HOME=str(home),
        OMP_NUM_THREADS="1",
    )
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "medview", str(path), "--screenshot", str(shot)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stderr, time.monotonic() - t0


def _assert_survived(rc: int, err: str, shot: Path, what: str) -> None:
    assert rc in (0, 1), f"{what}: exit {rc}\n{err[-2000:]}"  # negative: killed by a signal
    assert "Traceback" not in err, f"{what}:\n{err[-2000:]}"
    assert shot.is_file() and shot.stat().st_size > 1000, f"{what}: no screenshot"
    for line in err.splitlines():
        assert len(line) < 1200, f"{what}: a message is not one short line: {line[:200]}"


def test_gui_opens_a_folder_of_mutants(fuzz_sources, tmp_path):
    folder = tmp_path / "mutants"
    folder.mkdir()
    made = _write(mutants(4, fuzz_sources), folder)
    assert made >= 30
    rc, err, _ = _open(folder, tmp_path / "shot.png", tmp_path / "home", timeout=600)
    _assert_survived(rc, err, tmp_path / "shot.png", "folder of mutants")
    assert rc == 1 and err.strip(), "the hostile files were reported"


@pytest.mark.slow
def test_gui_opens_every_mutant_alone(fuzz_sources, tmp_path):
    for m in mutants(3, fuzz_sources):
        folder = tmp_path / m.name
        folder.mkdir()
        try:
            path = m.make(folder)
        except TypeError:
            continue
        shot = tmp_path / f"{m.name}.png"
        rc, err, _ = _open(path, shot, tmp_path / "home", timeout=120)
        _assert_survived(rc, err, shot, m.name)
