"""The decoded-pixel cache from the GUI: the window prefetches priors, the viewer setting
sets the bound (the cache itself is tested in tests/core/test_cache.py)."""

from __future__ import annotations

from medview.io import cache, scan
from tests.core import test_cache as core
from tests.core.test_cache import _as_new_study

cache_home = core.cache_home  # the core file's fixture, shared


def test_window_prefetches_priors_after_a_load_and_stops_on_another_study(
    cache_home, ct_dir, tmp_path, qtbot, monkeypatch
):
    from PySide6.QtCore import QObject

    from medview.io.database import StudyDatabase
    from medview.ui import pixel_cache as pixel_cache_ui

    monkeypatch.setenv("MEDVIEW_DB", str(tmp_path / "db.sqlite"))
    current = _as_new_study(ct_dir, tmp_path / "now", "20240301")
    prior = _as_new_study(ct_dir, tmp_path / "prior", "20230301")
    db = StudyDatabase()
    db.import_path([str(current), str(prior)])
    db.close()
    win = QObject()
    opened = scan(current).series[0]
    pixel_cache_ui.before_open(win, opened)
    pixel_cache_ui.after_load(win, opened)
    handle = win._prefetch_handle
    qtbot.waitUntil(lambda: not handle.running, timeout=60_000)
    assert len(cache.PixelCache().entries()) == 20  # the prior's 20 slices
    # another patient's study opened while a prefetch runs: the prefetch is cancelled
    cache.PixelCache().clear()
    pixel_cache_ui.after_load(win, opened)
    handle = win._prefetch_handle
    other = scan(prior).series[0]
    other.study_uid = "1.2.3.other"
    pixel_cache_ui.before_open(win, other)
    qtbot.waitUntil(lambda: not handle.running, timeout=60_000)
    assert handle.cancelled
    win.prefetch_slot.close()


def test_viewer_setting_sets_the_cache_bound(medview_home, monkeypatch):
    from medview.ui import pixel_cache as pixel_cache_ui
    from medview.ui import settings as user_settings

    monkeypatch.delenv(cache.LIMIT_ENV, raising=False)
    monkeypatch.setattr(cache, "_configured_mb", None)
    user_settings.set_value(cache.SETTING_KEY, 300)
    pixel_cache_ui.apply_limit()
    assert cache.limit_bytes() == 300 * 2**20
    user_settings.set_value(cache.SETTING_KEY, "lots")  # not a number: the default
    pixel_cache_ui.apply_limit()
    assert cache.limit_bytes() == cache.DEFAULT_LIMIT_MB * 2**20
    user_settings.set_value(cache.SETTING_KEY, 0)
    pixel_cache_ui.apply_limit()
    assert cache.default_cache() is None
    assert pixel_cache_ui.cache_on_import() is False
    user_settings.set_value("cache_on_import", True)
    assert pixel_cache_ui.cache_on_import() is True
