"""medview: an offline imaging workstation.

Everything outside :mod:`medview.ui` is Qt-free and usable from scripts and the
command line. Heavy libraries (torch, SimpleITK, PySide6) are imported lazily
by the features that need them, so ``import medview`` stays cheap.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
