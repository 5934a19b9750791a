"""``medview.selftest`` is :mod:`medview.commands.selftest` under its old name.

The self-test is command-line code and lives with the commands; this alias keeps
``from medview.selftest import SAMPLE_FILES`` (packaging/medview.spec) and
``from medview import selftest`` working, with the same module object (so
attributes set on one are seen by the other).
"""

from __future__ import annotations

import sys

from medview.commands import selftest as _selftest

sys.modules[__name__] = _selftest
