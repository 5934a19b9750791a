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
    import ctypes

    for obj in (None, True, False, Ellipsis, NotImplemented):
        ref = ctypes.c_ssize_t.from_address(id(obj))
        if ref.value < (1 << 40):
            ref.value += 1 << 40


keep_none_alive()
