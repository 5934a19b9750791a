"""One SR per analysed series (``medview analyze --sr-out DIR``): the AI findings of the
series' images, plus the measurements stored for them, as a TID 1500 Measurement Report."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from medview.results.sr import SRError, build_sr, finding_from_result, image_refs, write_sr


def write_analysis_srs(
    results: list[Any], path: str, out_dir: str, db: Any | None = None
) -> tuple[list[str], list[str]]:
    """Write ``<out_dir>/<series UID>.dcm`` (other characters than digits, letters and dots
    as ``_``) for every DICOM series of ``path`` with results.

    Returns (written files, one-line problems). Results of non-DICOM images (PNG...) have no SOP
    instance to reference and are reported as a problem, not written.
    """
    from medview.io import scan
    from medview.results import audit

    by_path: dict[str, tuple[Any, Any]] = {}
    for s in scan(path).series:
        for inst in s.instances:
            by_path[os.path.abspath(str(inst.path))] = (s, inst)
    per_series: dict[str, list[Any]] = {}
    series_of: dict[str, Any] = {}
    problems: list[str] = []
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
            sr = build_sr(image_refs([str(i.path) for i in s.instances]), rows, findings)
            name = re.sub(r"[^0-9A-Za-z.]", "_", uid)
            out = write_sr(sr, Path(out_dir) / f"{name}.dcm")
        except (SRError, OSError) as exc:
            problems.append(f"series {uid}: SR not written ({exc})")
            continue
        written.append(str(out))
        models = {(f.model, f.version, f.sha256) for f in findings}
        try:
            audit.record(
                "analyze",
                study_uid=s.study_uid or None,
                series_uids=[uid],
                model=[{"name": n, "version": v, "sha256": h} for n, v, h in sorted(models)],
                output=str(out.resolve()),
                findings=len(findings),
            )
        except OSError as exc:
            problems.append(f"audit log not written ({exc})")
    return written, problems
