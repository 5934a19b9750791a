"""GUI-only fixtures; every test collected under ``tests/ui`` is marked ``gui``."""

from __future__ import annotations

from pathlib import Path

import pytest

UI_DIR = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Mark ``gui`` every item of this folder (the hook sees all items: filter by path)."""
    for item in items:
        if UI_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.gui)


@pytest.fixture()
def make_window(qtbot, medview_home, in_process_decoding):
    """``make(load_panels=False)``: a main window, 1400x900, shown and exposed; every
    window made is closed after the test (GUI tests only: needs PySide6 and pytest-qt)."""
    from medview.ui.main_window import MainWindow

    made = []

    def make(load_panels: bool = False) -> MainWindow:
        w = MainWindow(load_panels=load_panels)
        qtbot.addWidget(w)
        w.resize(1400, 900)
        w.show()
        qtbot.waitExposed(w)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.fixture()
def make_3d_window(qtbot, medview_home, in_process_decoding, ct_dir):
    """``make(width, height)``: the main window as ``medview CT --layout 3d`` opens it on
    the real CT, shown; every window made is closed after the test (skips without VTK)."""
    pytest.importorskip("vtkmodules.vtkRenderingCore", reason="VTK is not installed (optional)")
    import types

    from medview.ui.app import create_window

    made = []

    def make(width: int, height: int):
        args = types.SimpleNamespace(layout="3d", preset=None, paths=[str(ct_dir)])
        win = create_window(args, load_panels=False)
        qtbot.addWidget(win)
        win.resize(width, height)
        win.show()
        made.append(win)
        return win

    yield make
    for w in made:
        w.close()
