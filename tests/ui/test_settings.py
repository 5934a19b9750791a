"""The one settings store: plain JSON under MEDVIEW_HOME, never an unpickled object."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# writes a QSettings INI whose values are pickles that create ``marker`` when unpickled
_CRAFT = textwrap.dedent(
    """
    import sys
    from PySide6.QtCore import QSettings

    class Payload:
        def __reduce__(self):
            return (open, (sys.argv[2], "w"))

    s = QSettings(sys.argv[1], QSettings.Format.IniFormat)
    for key in ("layout", "recent", "ai/device", "presets/evil"):
        s.setValue(key, Payload())
    s.setValue("last_folder", "/plain/folder")
    s.sync()
    """
)
_QT_READ = textwrap.dedent(
    """
    import sys
    from PySide6.QtCore import QSettings

    QSettings(sys.argv[1], QSettings.Format.IniFormat).value("layout")
    """
)


def _python(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "QT_QPA_PLATFORM": "offscreen", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=full, capture_output=True, text=True, timeout=120
    )


@pytest.fixture()
def crafted(tmp_path, medview_home) -> tuple[Path, Path]:
    """A settings.ini with pickle payloads in MEDVIEW_HOME, and the marker they would create."""
    pytest.importorskip("PySide6")
    medview_home.mkdir(parents=True, exist_ok=True)
    ini, marker = medview_home / "settings.ini", tmp_path / "MARKER"
    assert _python(_CRAFT, str(ini), str(marker)).returncode == 0
    assert "@Variant(" in ini.read_text()
    # the payload is live: Qt's own reader runs it
    assert _python(_QT_READ, str(ini)).returncode == 0
    assert marker.exists(), "control: QSettings.value() should have unpickled the payload"
    marker.unlink()
    return ini, marker


def test_a_pickled_settings_file_is_not_executed(crafted, caplog) -> None:
    from medview.ui import presets, settings

    ini, marker = crafted
    with caplog.at_level(logging.WARNING, logger="medview.ui.settings"):
        s = settings.settings()
        assert s.value("layout", "1x1") == "1x1"
        assert settings.value("ai/device", "auto") == "auto"
        assert settings.recent_paths() == []
        assert "evil" not in presets.all_presets()
    assert not marker.exists()
    # the plain value is taken over; one warning line names the file and the keys
    assert s.value("last_folder") == "/plain/folder"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert str(ini) in lines[0] and "layout" in lines[0] and "ai/device" in lines[0]
    saved = json.loads((ini.parent / "settings.json").read_text())
    assert saved == {"last_folder": "/plain/folder"}


def test_the_gui_does_not_run_a_crafted_settings_file(crafted, tmp_path) -> None:
    """Issue 18's path: ``medview --screenshot`` with crafted files in both old locations."""
    ini, marker = crafted
    config = tmp_path / "config"
    (config / "medview").mkdir(parents=True)
    # the AI panel used to read QSettings("medview", "medview"): ~/.config/medview/medview.conf
    assert _python(_CRAFT, str(config / "medview" / "medview.conf"), str(marker)).returncode == 0
    shot = tmp_path / "shot.png"
    env = {
        "MEDVIEW_HOME": str(ini.parent),
        "XDG_CONFIG_HOME": str(config),
        "OMP_NUM_THREADS": "1",
        "MEDVIEW_DECODE_WORKERS": "0",
    }
    p = _python("from medview.cli import main; main()", "--screenshot", str(shot), env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert shot.exists() and not marker.exists()
    assert "Qt-serialised value(s) ignored" in p.stderr


def test_a_json_file_with_non_plain_values_keeps_only_plain_ones(medview_home, caplog) -> None:
    from medview.ui import settings

    medview_home.mkdir(parents=True)
    path = medview_home / "settings.json"
    path.write_text(
        json.dumps(
            {
                "layout": "2x2",
                "recent": ["/a", "/b"],
                "presets": {"mine": [40, 400]},
                "ai/device": "@Variant(\\0\\0\\0\\x7fPySide::PyObjectWrapper)",
                "last_folder": None,
                "nested": {"ok": [1, {"bad": "x @Variant(y"}]},
            }
        )
    )
    with caplog.at_level(logging.WARNING, logger="medview.ui.settings"):
        s = settings.settings()
        settings.settings()  # read again: warned once per file version
    assert s.data == {"layout": "2x2", "recent": ["/a", "/b"], "presets": {"mine": [40, 400]}}
    ((line),) = [r.getMessage() for r in caplog.records]
    assert "3 setting(s) ignored" in line and "ai/device" in line and "nested" in line
    # NaN is not a JSON value medview accepts; a broken file gives the defaults
    path.write_text('{"layout": NaN}')
    assert settings.settings().data == {}
    path.write_text("[General]\nlayout=@Variant(junk)\n")
    assert settings.settings().data == {}


def test_every_setting_lives_under_medview_home_mode_0600(qtbot, medview_home, tmp_path) -> None:
    from medview.ui import presets, settings
    from medview.ui.panels.ai_panel import AIPanel

    config = Path(os.environ["XDG_CONFIG_HOME"])
    before = sorted(p for p in config.rglob("*"))
    settings.set_value("layout", "1x2")
    settings.set_value("last_folder", str(tmp_path))
    settings.add_recent("/x/ct")
    presets.save_user_preset("my lung", -500, 1400)
    panel = AIPanel()
    qtbot.addWidget(panel)
    panel.device_box.setCurrentText("cpu")
    panel.shutdown()
    path = medview_home / "settings.json"
    assert json.loads(path.read_text()) == {
        "ai/device": "cpu",
        "last_folder": str(tmp_path),
        "layout": "1x2",
        "presets": {"my lung": [-500.0, 1400.0]},
        "recent": ["/x/ct"],
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p for p in config.rglob("*")) == before  # nothing in ~/.config
    # read back through a new panel and the presets
    again = AIPanel()
    qtbot.addWidget(again)
    assert again.device_box.currentText() == "cpu"
    again.shutdown()
    assert presets.resolve_preset("my lung") == (-500.0, 1400.0)
    assert settings.recent_paths() == ["/x/ct"]


def test_an_old_plain_ini_is_taken_over(medview_home) -> None:
    """Values a QSettings INI of earlier versions held (written by Qt, read by our parser)."""
    from medview.ui import presets, settings

    medview_home.mkdir(parents=True)
    (medview_home / "settings.ini").write_text(
        "[General]\nlast_folder=/home/x y\nlayout=2x2\n"
        'recent=/e, "/a b/c,d"\n\n[presets]\nmy%20lung="-500,1400"\nx%3Dy%3Bz="1,2"\n'
    )
    s = settings.settings()
    assert s.value("layout") == "2x2" and s.value("last_folder") == "/home/x y"
    assert settings.recent_paths() == ["/e", "/a b/c,d"]
    assert presets.resolve_preset("my lung") == (-500.0, 1400.0)
    assert presets.user_presets()["x=y;z"] == (1.0, 2.0, "x=y;z")


def test_only_plain_data_is_stored(medview_home) -> None:
    from medview.ui import settings

    with pytest.raises(TypeError):
        settings.set_value("layout", object())
    with pytest.raises(TypeError):
        settings.set_value("recent", ["/a", float("nan")])
    assert not (medview_home / "settings.json").exists()
