"""Qt widgets. The only package allowed to import PySide6.

Importing this package applies :func:`keep_none_alive` (see there): PySide6 6.12's
stable-ABI build drops one reference to ``None`` on every call of a C++ method that
returns ``void`` (and to ``True``/``False`` for ``bool``) when it runs on CPython
< 3.12, where these singletons are not immortal. A viewport paint makes about 35
such calls, so after a few hundred slices the interpreter aborted with "Fatal
Python error: none_dealloc" (or bool_dealloc at exit).
"""

from __future__ import annotations

import sys


def keep_none_alive() -> None:
    """Give ``None``, ``True`` and ``False`` reference counts the PySide6 6.12 leak
    cannot exhaust.

    On CPython >= 3.12 ``None`` is immortal and this does nothing. Safe: it runs
    with the GIL held, and ``None`` must never be deallocated anyway.
    """
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return
    try:
        from importlib.metadata import version

        major, minor = (int(x) for x in version("PySide6").split(".")[:2])
    except Exception:  # unknown build: be safe
        major, minor = 6, 12
    if (major, minor) < (6, 12):
        return  # 6.11 and older keep their references right (checked with 6.11.3)
    import ctypes

    for obj in (None, True, False, Ellipsis, NotImplemented):
        ref = ctypes.c_ssize_t.from_address(id(obj))
        if ref.value < (1 << 40):
            ref.value += 1 << 40


keep_none_alive()
