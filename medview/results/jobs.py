"""The results actions of the viewer as plain worker functions (Qt-free): each takes a
:class:`~medview.tasks.TaskState`, does the whole job (write the object, then its audit event)
and returns a small summary. ``medview.ui.results_actions`` runs them through
``TaskSlot.run``; tests call them directly.

An audit event that cannot be written does not undo the output: the summary's ``audit``
field names the reason (the GUI shows it as a warning).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medview.results import audit
from medview.results.export import ExportOptions, ExportReport, export_paths
from medview.tasks import TaskState, ensure_state

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11


def _audit(action: str, **fields: Any) -> str:
    """Write one audit event; "" or the one-line reason it failed."""
    try:
        audit.record(action, **fields)
    except OSError as exc:
        return f"audit log not written ({exc.strerror or exc})"
    return ""


def _audit_series(action: str, study: str, series: str, **fields: Any) -> str:
    """:func:`_audit` of an event about one series of one study (either may be unknown)."""
    return _audit(action, study_uid=study or None, series_uids=[series] if series else [], **fields)


def audit_export(report: ExportReport) -> str:
    """One ``export`` event per exported study; "" or why the log could not be written."""
    destination = report.zip_path or os.path.abspath(report.out)
    for study, series in report.studies.items():
        note = _audit(
            "export",
            study_uid=study or None,
            series_uids=series,
            output=destination,
            anonymized=report.anonymized,
            options=report.options,
            files=report.study_files.get(study, 0),
        )
        if note:
            return note
    return ""


def export_job(
    paths: list[str],
    out: str,
    anonymize: bool = True,
    state: TaskState | None = None,
    **options: Unpack[ExportOptions],
) -> dict[str, Any]:
    """Export (see :func:`~medview.results.export.export_paths`, whose ``options`` it takes)
    and audit it; the report's ``as_dict()`` plus ``audit`` ("" when written)."""
    report = export_paths(paths, out, anonymize=anonymize, state=state, **options)
    return report.as_dict() | {"audit": audit_export(report) if report.written else ""}


def _study_db(db_path: str | os.PathLike[str] | None) -> Any:
    from medview.io.database import StudyDatabase

    return StudyDatabase(db_path)


def _instance_paths(volume: Any) -> list[str]:
    return sorted({str(i.path) for i in volume.instances if getattr(i, "path", "")})


def _series_uids(volume: Any) -> tuple[str, str]:
    info = getattr(volume, "series", None)
    return str(getattr(info, "study_uid", "") or ""), str(getattr(info, "series_uid", "") or "")


def sr_job(
    volume: Any,
    out: str,
    db_path: str | os.PathLike[str] | None = None,
    state: TaskState | None = None,
) -> dict[str, Any]:
    """A TID 1500 SR of the stored measurements of ``volume``'s images, written to ``out``
    and audited. :class:`~medview.results.sr.SRError` when there is nothing to report."""
    from medview.results.sr import build_sr, image_refs, write_sr

    st = ensure_state(state)
    st.progress(0.1, "reading the image headers")
    refs = image_refs(_instance_paths(volume))
    db = _study_db(db_path)
    try:
        rows: list[dict[str, Any]] = []
        for sop in refs:
            rows += db.measurements(sop)
    finally:
        db.close()
    st.progress(0.6, "writing the SR")
    sr = build_sr(refs, rows)
    path = write_sr(sr, out)
    note = _audit_series(
        "sr",
        *_series_uids(volume),
        output=str(path.resolve()),
        measurements=len(rows),
        findings=0,
    )
    return {"out": str(path), "measurements": len(rows), "audit": note}


def kos_job(
    volume: Any,
    out: str,
    db_path: str | os.PathLike[str] | None = None,
    state: TaskState | None = None,
) -> dict[str, Any]:
    """A Key Object Selection document of ``volume``'s flagged key images, written to
    ``out`` and audited. :class:`~medview.results.sr.SRError` when none is flagged."""
    from medview.results.key_images import KeyImage, KeyImageDatabase
    from medview.results.kos import build_kos, write_kos
    from medview.results.sr import image_refs

    st = ensure_state(state)
    study, series = _series_uids(volume)
    sops = [i.sop_uid for i in volume.instances if i.sop_uid]
    kdb = KeyImageDatabase(db_path)
    try:
        flagged = sorted(kdb.flagged(sops), key=lambda p: (sops.index(p[0]), p[1]))
    finally:
        kdb.close()
    keys = [KeyImage(s, f, series, study) for s, f in flagged]
    st.progress(0.3, "reading the image headers")
    paths = sorted({str(i.path) for i in volume.instances if i.sop_uid in {k[0] for k in flagged}})
    kos = build_kos(image_refs(paths), keys)
    path = write_kos(kos, out)
    note = _audit_series("sr", study, series, output=str(path.resolve()), key_images=len(keys))
    return {"out": str(path), "key_images": len(keys), "audit": note}


def key_indices(volume: Any, db_path: str | os.PathLike[str] | None = None) -> list[int]:
    """Slices of ``volume`` flagged as key images (in slice order)."""
    from medview.results.key_images import KeyImageDatabase

    sops = [getattr(i, "sop_uid", "") for i in volume.instances]
    kdb = KeyImageDatabase(db_path)
    try:
        flagged = kdb.flagged(s for s in sops if s)
    finally:
        kdb.close()
    multi = len(sops) != int(volume.array.shape[0])
    if multi:
        return sorted({f for _s, f in flagged})
    return sorted({sops.index(s) for s, _f in flagged if s in sops})


def report_job(
    volume: Any,
    out: str,
    db_path: str | os.PathLike[str] | None = None,
    ai_results: list[Any] | None = None,
    records: Any = None,
    state: TaskState | None = None,
) -> dict[str, Any]:
    """The PDF report of ``volume`` (stored measurements, flagged key images first, the AI
    results given, the forecast and suggestions of the linked record patient when
    ``records`` is given), written to ``out`` and audited."""
    from medview.results.report import ReportInput, _header, build_report, key_images

    st = ensure_state(state)
    db = _study_db(db_path)
    try:
        rows: list[dict[str, Any]] = []
        for inst in volume.instances:
            if inst.sop_uid:
                rows += db.measurements(inst.sop_uid)
    finally:
        db.close()
    paths = _instance_paths(volume)
    inp = ReportInput(
        volume.series,
        volume,
        rows,
        list(ai_results or []),
        key_indices=key_indices(volume, db_path),
        header=_header(paths[0]) if paths else {},
    )
    if records is not None:
        from medview.results.report_records import records_section

        inp.records = records_section(records, volume.series, state=st)
    path = build_report(inp, out, state=st)
    models = sorted({(r.model, r.version) for r in inp.ai_results})
    note = _audit_series(
        "report",
        *_series_uids(volume),
        model=[audit.model_info(n, v) for n, v in models] or None,
        output=str(Path(path).resolve()),
    )
    return {
        "out": str(path),
        "key_images": [k + 1 for k in key_images(inp)],
        "measurements": len(rows),
        "audit": note,
    }


def audit_open(volume: Any) -> str:
    """The ``open`` event of a series shown in the viewer; "" or why it was not written."""
    study, series = _series_uids(volume)
    if not (study or series):
        return ""
    first = next((str(i.path) for i in volume.instances if getattr(i, "path", "")), None)
    return _audit_series("open", study, series, output=None, source=first)


def audit_analyze(study_uid: str, series_uid: str, models: list[tuple[str, str]]) -> str:
    """The ``analyze`` event of an AI run in the viewer; "" or why it was not written."""
    return _audit_series(
        "analyze",
        study_uid,
        series_uid,
        model=[audit.model_info(n, v) for n, v in models] or None,
        output=None,
    )
