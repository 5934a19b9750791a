"""The window's side of the decoded-pixel cache (:mod:`medview.io.cache`) and the
priors prefetch (:mod:`medview.viewer.prefetch`).

Settings (:mod:`medview.ui.settings`, plain JSON in the user data folder):

* ``pixel_cache_mb``: the cache bound in MB (default 8192; 0 turns the cache
  off; ``MEDVIEW_PIXEL_CACHE_MB`` wins over it);
* ``prefetch_priors``: after a study has loaded, decode the same patient's prior
  studies in the local database into the cache (default on);
* ``cache_on_import``: decode the studies imported into the local database into
  the cache, on the import's worker (default off).

The prefetch runs on its own :class:`~medview.ui.workers.TaskSlot` (a lowered
thread priority, decoding in the low-priority decoder processes), starts only
once the opened series has finished loading, and is cancelled as soon as the
user opens a series of another study.
"""

from __future__ import annotations

import logging
from typing import Any

from medview.ui import settings as user_settings

log = logging.getLogger(__name__)


def apply_limit() -> None:
    """Hand the ``pixel_cache_mb`` setting to the cache (None: its default)."""
    from medview.io import cache

    mb = user_settings.value(cache.SETTING_KEY)
    ok = isinstance(mb, (int, float)) and not isinstance(mb, bool) and mb >= 0
    cache.set_limit_mb(int(mb) if ok else None)


def cache_on_import() -> bool:
    """Whether imports also fill the cache (the ``cache_on_import`` setting)."""
    return user_settings.value("cache_on_import", False) is True


def _running_for(win: Any) -> str | None:
    handle = getattr(win, "_prefetch_handle", None)
    if handle is None or not getattr(handle, "running", False):
        return None
    return getattr(win, "_prefetch_study", None)


def before_open(win: Any, series: Any) -> None:
    """A series is being opened: apply the limit; stop a prefetch for another study."""
    apply_limit()
    study = getattr(series, "study_uid", None)
    slot = getattr(win, "prefetch_slot", None)
    if slot is not None and _running_for(win) not in (None, study):
        slot.cancel()


def after_load(win: Any, series: Any) -> None:
    """A series has loaded: prefetch its patient's priors (unless already under way)."""
    from medview.ui.workers import TaskSlot
    from medview.viewer.prefetch import prefetch_priors

    if user_settings.value("prefetch_priors", True) is not True:
        return
    if getattr(series, "kind", "") != "dicom" or not getattr(series, "study_uid", ""):
        return
    if _running_for(win) == series.study_uid:
        return
    slot = getattr(win, "prefetch_slot", None)
    if slot is None:
        slot = win.prefetch_slot = TaskSlot(win)
    win._prefetch_study = series.study_uid
    win._prefetch_handle = slot.run(
        prefetch_priors,
        series,
        name="priors prefetch",
        on_result=lambda r: log.info(
            "priors prefetch: %d studies, %d images decoded, %d already cached",
            r.studies,
            r.written,
            r.cached,
        ),
        on_error=lambda msg: log.info("priors prefetch stopped: %s", msg),
    )
