"""Priors prefetch: decode the open patient's other studies into the pixel cache.

When a study opens, the radiologist will most likely compare it with the same
patient's earlier studies. :func:`prefetch_priors` finds those in the local
study database and decodes their compressed images into the decoded-pixel cache
(:mod:`medview.io.cache`), so opening a prior reads raw pixels instead of
decoding JPEG 2000 again. No volume is built.

It is a plain worker function: the window runs it through ``TaskSlot.run`` after
the opened series has finished loading (so it never competes with the load the
user waits for), and a new open cancels it (``state.check()`` between files and
between series). The decoding runs in the shared decoder processes, which run
at a lowered CPU priority.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medview.tasks import TaskState, ensure_state

if TYPE_CHECKING:
    from medview.io import SeriesInfo
    from medview.io.database import StudyDatabase

#: how many prior studies (newest first) are prefetched
MAX_PRIOR_STUDIES = 3


@dataclass
class PrefetchReport:
    """What one prefetch did: studies and series looked at, instances found cached
    already and instances newly decoded into the cache."""

    studies: int = 0
    series: int = 0
    cached: int = 0
    written: int = 0


def _same_patient(row: dict[str, Any], key: str) -> bool:
    from medview.io.database import patient_key

    other = patient_key(
        str(row.get("patient_id") or ""),
        str(row.get("patient_name") or ""),
        str(row.get("birth_date") or ""),
    )
    return other == key


def prior_studies(
    db: StudyDatabase, series: SeriesInfo, limit: int = MAX_PRIOR_STUDIES
) -> list[dict[str, Any]]:
    """The patient's other studies in ``db``, newest first, at most ``limit``."""
    from medview.io.database import patient_key

    key = patient_key(series.patient_id, series.patient_name, series.patient_birth_date)
    if not key.strip("|"):
        return []  # no patient identity: nothing is known to be a prior
    text = series.patient_id or series.patient_name
    rows = [
        r
        for r in db.studies(text=text or None)
        if r.get("study_uid") != series.study_uid and _same_patient(r, key)
    ]
    return rows[:limit]


def prefetch_priors(
    series: SeriesInfo,
    state: TaskState | None = None,
    limit: int = MAX_PRIOR_STUDIES,
    db: StudyDatabase | None = None,
) -> PrefetchReport:
    """Worker: decode the compressed images of the prior studies of ``series``'s
    patient into the pixel cache. Does nothing when the cache is off."""
    from medview.io import cache, scan
    from medview.io.database import StudyDatabase

    state = ensure_state(state)
    report = PrefetchReport()
    if cache.default_cache() is None:
        return report
    own = db is None
    db = StudyDatabase() if db is None else db
    try:
        studies = prior_studies(db, series, limit)
        jobs = [(s, row) for s in studies for row in db.series(str(s["study_uid"]))]
    finally:
        if own:
            db.close()
    report.studies = len(studies)
    for _, row in jobs:
        state.check()
        files = [str(f) for f in row.get("files") or []]
        if not files:
            continue
        found = scan(files).find(str(row.get("series_uid") or ""))
        if found is None or found.kind != "dicom":
            continue
        have, written = cache.warm(found.instances, state)
        report.series += 1
        report.cached += have
        report.written += written
    state.progress(1.0, "priors cached")
    return report


def cache_paths(paths: list[str], state: TaskState | None = None) -> tuple[int, int]:
    """Worker: decode the compressed images found under ``paths`` into the pixel cache
    (``medview import --cache``, and imports when the viewer's setting asks for it).
    Returns ``(already cached, newly written)``; (0, 0) when the cache is off."""
    from medview.io import cache, scan

    state = ensure_state(state)
    if cache.default_cache() is None:
        return 0, 0
    have = written = 0
    for series in scan(paths).series:
        state.check()
        if series.kind == "dicom":
            h, w = cache.warm(series.instances, state)
            have, written = have + h, written + w
    return have, written
