"""Tests of the Qt-free core (no PySide6, no qtbot: see test_suite_shape.py)."""
