"""PyInstaller entry script for the frozen medview app (``dist/medview/medview``).

``medview.cli.main`` calls :func:`multiprocessing.freeze_support` first, so the
decoder worker processes (forkserver on Linux, spawn on Windows/macOS) start from
this same executable.
"""

import sys

from medview.cli import main

if __name__ == "__main__":
    sys.exit(main())
