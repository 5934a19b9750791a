"""GUI half of core/test_privacy.py: the Qt settings file and the audit log are private (0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_settings_and_audit_files_0600(medview_home: Path) -> None:
    from medview.results import audit
    from medview.ui import settings

    settings.set_value("probe", 1)
    audit.record("probe")
    assert stat.S_IMODE(settings.settings_path().stat().st_mode) == 0o600
    assert stat.S_IMODE(audit.log_path().stat().st_mode) == 0o600
