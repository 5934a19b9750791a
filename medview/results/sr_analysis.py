"""DICOM output of ``medview analyze --sr-out DIR``: per analysed DICOM series one SR (TID 1500:
the AI findings plus the measurements stored for its images) and, for results that carry a heat
map, one Secondary Capture per map with the disclaimer burnt in (:mod:`medview.results.sc`)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from medview.results.sr import SRError, build_sr, finding_from_result, image_refs, write_sr


def _safe(uid: str) -> str:
    return re.sub(r"[^0-9A-Za-z.]", "_", uid)


def _group(results: list[Any], path: str) -> tuple[dict[str, list[Any]], dict[str, Any], set[str]]:
    """Results per DICOM series (``key`` set to ``SOP`` or ``SOP#frame``), the series, and the
    paths of results that are not DICOM images."""
    from medview.io import scan

    by_path: dict[str, tuple[Any, Any]] = {}
    for s in scan(path).series:
        for inst in s.instances:
            by_path[os.path.abspath(str(inst.path))] = (s, inst)
    per_series: dict[str, list[Any]] = {}
    series_of: dict[str, Any] = {}
    not_dicom: set[str] = set()
    for r in results:
        hit = by_path.get(os.path.abspath(r.path))
        if hit is None or hit[0].kind != "dicom":
            not_dicom.add(r.path)
            continue
        s, inst = hit
        r.key = f"{inst.sop_uid}#{r.index}" if s.frames > 1 else inst.sop_uid
        per_series.setdefault(s.series_uid, []).append(r)
        series_of[s.series_uid] = s
    return per_series, series_of, not_dicom


def _write_maps(
    rs: list[Any], refs: dict[str, Any], images: dict[int, Any], out_dir: str, uid: str
) -> tuple[list[str], list[str]]:
    """Secondary Captures of the results' heat maps (one new series per analysed series)."""
    import highdicom as hd

    from medview.results.sc import heatmap_sc

    written: list[str] = []
    problems: list[str] = []
    sc_series = hd.UID()
    n = 0
    for r in rs:
        gray = images.get(id(r))
        ref = refs.get(r.key.partition("#")[0])
        if r.heatmap is None or gray is None or ref is None:
            continue
        n += 1
        caption = f"{r.model}: {r.heatmap_label or r.heatmap_kind}"
        if not r.in_scope:
            caption = "OUTSIDE INTENDED USE | " + caption
        try:
            sc = heatmap_sc(ref.header, gray, r.overlay_heatmap(), caption, sc_series, n)
            out = Path(out_dir) / f"{_safe(uid)}_map{n:04d}.dcm"
            out.parent.mkdir(parents=True, exist_ok=True)
            sc.save_as(out, enforce_file_format=True)
        except (ValueError, OSError) as exc:
            problems.append(f"{r.path}: heat map not written as DICOM ({exc})")
            continue
        written.append(str(out))
    return written, problems


def write_analysis_srs(
    results: list[Any],
    path: str,
    out_dir: str,
    db: Any | None = None,
    images: dict[int, Any] | None = None,
) -> tuple[list[str], list[str]]:
    """Write ``<out_dir>/<series UID>.dcm`` (characters other than digits, letters and dots as
    ``_``) for every DICOM series of ``path`` with results, and ``<series UID>_mapNNNN.dcm`` for
    each result with a heat map when ``images`` maps ``id(result)`` to its display image.

    Returns (written files, one-line problems). Results of non-DICOM images (PNG...) have no SOP
    instance to reference and are reported as a problem, not written.
    """
    from medview.results import audit

    per_series, series_of, not_dicom = _group(results, path)
    problems: list[str] = []
    if not_dicom:
        problems.append(
            f"{len(not_dicom)} image(s) not DICOM (e.g. {sorted(not_dicom)[0]}): no SOP instance "
            "to reference, no SR for them"
        )
    written: list[str] = []
    for uid, rs in per_series.items():
        s = series_of[uid]
        rows: list[dict[str, Any]] = []
        if db is not None:
            for inst in s.instances:
                rows += db.measurements(inst.sop_uid)
        try:
            findings = [finding_from_result(r) for r in rs]
            refs = image_refs([str(i.path) for i in s.instances])
            out = write_sr(build_sr(refs, rows, findings), Path(out_dir) / f"{_safe(uid)}.dcm")
        except (SRError, OSError) as exc:
            problems.append(f"series {uid}: SR not written ({exc})")
            continue
        maps, map_problems = _write_maps(rs, refs, images or {}, out_dir, uid)
        problems += map_problems
        written += [str(out)] + maps
        models = {(f.model, f.version, f.sha256) for f in findings}
        try:
            audit.record(
                "analyze",
                study_uid=s.study_uid or None,
                series_uids=[uid],
                model=[{"name": n, "version": v, "sha256": h} for n, v, h in sorted(models)],
                output=str(out.resolve()),
                findings=len(findings),
                maps=maps,
            )
        except OSError as exc:
            problems.append(f"audit log not written ({exc})")
    return written, problems
