"""The test suite's shape (issue 11 item 8): ``tests/core`` is Qt-free, every test under
``tests/ui`` is marked ``gui``, and no test, helper or benchmark edits ``sys.path``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

TESTS = REPO / "tests"
QT_MODULES = ("PySide6", "shiboken6", "pytestqt", "medview.ui")
QT_FIXTURES = {"qtbot", "qapp", "make_window"}


def _qt_uses(path: Path) -> list[str]:
    """Qt imports (anywhere in the module) and Qt fixtures asked for by any function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.FunctionDef):
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            found += [f"{node.name}({a.arg})" for a in args if a.arg in QT_FIXTURES]
            continue
        else:
            continue
        qt = [n for n in names if n.startswith(QT_MODULES)]
        found += [f"import {qt[0]}"] if qt else []
    return found


def test_core_tests_are_qt_free():
    bad = {
        str(p.relative_to(REPO)): uses
        for p in sorted((TESTS / "core").rglob("*.py"))
        if (uses := _qt_uses(p))
    }
    assert not bad, f"Qt in tests/core (move these tests to tests/ui): {bad}"


def test_the_guard_sees_qt(tmp_path):
    """The check above finds a Qt import, a Qt fixture and ``from medview import ui``."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\n"
        "from PySide6.QtCore import Qt\n"
        "from medview import ui\n"
        "def test_x(tmp_path, qtbot):\n    import medview.ui.viewport\n"
    )
    found = _qt_uses(probe)
    assert sorted(found) == [
        "import PySide6.QtCore",
        "import medview.ui",
        "import medview.ui.viewport",
        "test_x(qtbot)",
    ]


def test_no_sys_path_edits_in_tests_helpers_or_benchmarks():
    """Tests, helpers and benchmarks import ``tests.<...>`` from the repository root."""
    bad = []
    for p in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(), filename=str(p))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "path"
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
            ):
                bad.append(f"{p.relative_to(REPO)}:{node.lineno}")
    assert not bad, f"sys.path used in: {bad}"


def test_every_ui_test_is_marked_gui():
    """Collecting tests/ui with ``-m "not gui"`` deselects every test there."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + ["-m", "not gui", "tests/ui"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 5, out  # 5: no tests collected (all deselected)
    assert "deselected" in out and " 0 deselected" not in out, out
