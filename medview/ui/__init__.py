"""Qt widgets. The only package allowed to import PySide6.

PySide6 is pinned below 6.12 in ``pyproject.toml``: 6.12.0's stable-ABI build drops
a reference to ``None`` on every call of a ``void`` C++ method on CPython < 3.12 and
aborts the interpreter after a few hundred slices ("Fatal Python error:
none_dealloc"). Do not lift the pin without checking that on Python 3.10/3.11.
"""
