"""Shared test fixtures (Qt-free; the GUI-only ones are in tests/ui/conftest.py).

* ``tests/core``: tests of the Qt-free code; ``tests/ui``: GUI tests, all marked ``gui``;
  ``tests/helpers``: helpers shared by tests and benchmarks (``tests.helpers.<module>``).
* Qt runs offscreen; the per-user data folder is a temporary one (``MEDVIEW_HOME``).
* ``shared_data`` points at ``../shared/data``; tests needing it skip when absent.
* Every test fails if it leaves a medview worker (or any new Python thread) running, and
  what it writes into ``os.environ`` is undone after it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

# the networking fixtures (orthanc, ct_copy, study_uid) shared by tests/core/test_net.py and
# tests/ui/test_net_gui.py (assertions in the plugin are rewritten by pytest)
pytest_plugins = ("tests.helpers.net_fixtures",)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MEDVIEW_HOME", tempfile.mkdtemp(prefix="medview-test-home-"))
os.environ.setdefault("OMP_NUM_THREADS", "2")
# the decoded-pixel cache (medview.io.cache) stays on in tests, bounded in the temporary home
os.environ.setdefault("MEDVIEW_PIXEL_CACHE_MB", "512")
# never read or write the developer's own ~/.config (Qt and platformdirs look there)
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="medview-test-config-")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MEDVIEW_SHARED_DATA", REPO.parent / "shared" / "data"))
CT_DIR = SHARED_DATA / "ct" / "totalseg_example_dicom"
XRAY_DIR = SHARED_DATA / "xray"
RECORDS_DIR = SHARED_DATA / "records"
PNEUMONIAMNIST = SHARED_DATA / "pneumoniamnist" / "pneumoniamnist_train_val.npz"


def need(path: Path) -> Path:
    """Skip the calling test with a reason when ``path`` is missing."""
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared data folder is absent)")
    return path


def _data_fixture(name: str, path: Path):
    """A session fixture ``name`` giving ``path``; a test asking for it skips when absent."""

    def fixture() -> Path:
        return need(path)

    fixture.__doc__ = f"{path} (skips the test when absent)"
    return pytest.fixture(scope="session", name=name)(fixture)


shared_data = _data_fixture("shared_data", SHARED_DATA)
ct_dir = _data_fixture("ct_dir", CT_DIR)
xray_dir = _data_fixture("xray_dir", XRAY_DIR)
records_dir = _data_fixture("records_dir", RECORDS_DIR)


@pytest.fixture(scope="session")
def csv_dir(records_dir: Path) -> Path:
    """The Synthea CSV export of ../shared/data/records (27 patients)."""
    return records_dir / "synthea_csv_ma27"


@pytest.fixture(scope="module")
def ct_volume(ct_dir: Path):
    """The real 20-slice CT, decoded in-process (no decoder pool left behind); one per module."""
    from unittest import mock

    from medview.io import load_path

    with mock.patch.dict(os.environ, {"MEDVIEW_DECODE_WORKERS": "0"}):
        vol = load_path(ct_dir)
    assert vol.shape == (20, 512, 512)
    return vol


@pytest.fixture()
def volume_renderer(ct_volume):
    """A VTK offscreen renderer of :func:`ct_volume` (skips without VTK), closed after the
    test (its VTK thread ends with it)."""
    pytest.importorskip("vtkmodules.vtkRenderingCore", reason="VTK is not installed (optional)")
    from medview.viewer import volume3d

    r = volume3d.VolumeRenderer(ct_volume)
    yield r
    r.close()


@pytest.fixture(scope="session")
def fuzz_sources() -> list[Path]:
    """The DICOM files the fuzz mutants are made from (tests/fuzz/mutants.py)."""
    from tests.fuzz.mutants import source_files

    found = source_files()
    if len(found) < 20:
        pytest.skip("pydicom's test files are not installed")
    return found


@pytest.fixture()
def medview_home(tmp_path, monkeypatch) -> Path:
    """A fresh per-user data folder (and database) for one test."""
    home = tmp_path / "home"
    monkeypatch.setenv("MEDVIEW_HOME", str(home))
    monkeypatch.delenv("MEDVIEW_DB", raising=False)
    return home


@pytest.fixture()
def in_process_decoding(monkeypatch) -> None:
    """Decode in the worker thread (no decoder process pool outliving a test)."""
    monkeypatch.setenv("MEDVIEW_DECODE_WORKERS", "0")


@pytest.fixture()
def fresh_pool(monkeypatch):
    """Two decoder workers, no pool started, not broken: the test gets a pool of its own,
    stopped afterwards (the decoder pool's module state is restored by monkeypatch)."""
    from medview.io import decoders

    monkeypatch.setenv("MEDVIEW_DECODE_WORKERS", "2")
    monkeypatch.setattr(decoders, "_pool", None)
    monkeypatch.setattr(decoders, "_broken", False)
    monkeypatch.setattr(decoders, "_breaks_without_success", 0)
    monkeypatch.setattr(decoders, "_pool_ever_worked", False)
    yield monkeypatch
    decoders.shutdown()  # a pool (or replacement pool) started by the test


@pytest.fixture(autouse=True)
def no_leaked_environment():
    """Undo whatever a test, or code it runs in this process (a batch worker's set-up run
    by an in-process client sets MEDVIEW_DECODE_WORKERS=0), wrote into ``os.environ``:
    later tests, and the processes they start, see the suite's environment."""
    from unittest import mock

    with mock.patch.dict(os.environ):
        yield


@pytest.fixture(autouse=True)
def no_dangling_threads(request):
    """Fail any test that leaves a thread (or a medview worker) running."""
    before = set(threading.enumerate())
    yield
    if "PySide6" in sys.modules:
        try:
            from medview.ui import workers

            if workers._pool is not None:
                workers.shutdown_all(5000)
                assert not workers.active_tasks() or all(
                    not h.running for h in workers.active_tasks()
                ), "medview tasks still running after the test"
        except ImportError:
            pass
    deadline = time.monotonic() + 5.0
    while True:
        extra = [
            t
            for t in threading.enumerate()
            if t not in before
            and t.is_alive()
            and not t.daemon
            # the long-lived decoder process pool's manager thread is not a leak
            and type(t).__name__ != "_ExecutorManagerThread"
        ]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not extra, f"test left threads running: {[t.name for t in extra]}"
