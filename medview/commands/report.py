"""``medview report``: a PDF report of a series (header, key images with measurements, AI)."""

from __future__ import annotations

import argparse

from medview.commands import _args

HELP = "write a PDF report of a series: header, key images with measurements, AI findings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _args.add_path(parser, "the series (file or folder)")
    _args.add_out(parser, "FILE.pdf", "the PDF to write", required=True)
    _args.add_series(parser)
    _args.add_model(parser, "run this AI model and report it (repeatable)", device=True)
    parser.add_argument(
        "--key", type=int, action="append", metavar="N", help="slice N (1-based) is a key image"
    )
    _args.add_db(parser, _args.STUDY_DB_HELP)
    _args.add_records(
        parser,
        "patient records (FHIR, Synthea CSV, CGM): the linked patient's forecast and "
        "treatment suggestions go into the report",
    )
    _args.add_json(parser, "print a JSON summary")


def run(args: argparse.Namespace) -> int:
    import sys

    from medview.commands._common import error, need_paths, open_database, print_json

    need_paths(args.path)
    from medview.errors import MedviewError
    from medview.io import scan
    from medview.results import audit
    from medview.results.jobs import key_indices
    from medview.results.report import build_report, gather, key_images

    res = scan(args.path)
    series = [s for s in res.series if not args.series or s.series_uid == args.series]
    if not series:
        reason = res.errors[0].reason if res.errors else "no image series"
        return error(f"{args.path}: {reason}")
    info = series[0]
    db = open_database(args.db)
    try:
        inp = gather(info, db, args.model, device=args.device)
        flagged = key_indices(inp.volume, db.path)
        if args.records:
            inp.records = _records(args.records, info)
    except MedviewError as exc:
        return error(str(exc))
    finally:
        db.close()
    inp.key_indices = [k - 1 for k in args.key or []]
    inp.key_indices += [k for k in flagged if k not in inp.key_indices]
    try:
        out = build_report(inp, args.out)
    except OSError as exc:
        return error(f"{args.out}: cannot be written ({exc.strerror or exc})")
    models = sorted({(r.model, r.version) for r in inp.ai_results})
    try:
        audit.record(
            "report",
            study_uid=info.study_uid or None,
            series_uids=[info.series_uid],
            model=[audit.model_info(n, v) for n, v in models] or None,
            output=str(out.resolve()),
        )
    except OSError as exc:
        print(f"medview: audit log not written ({exc})", file=sys.stderr)
    summary = {
        "out": str(out),
        "series_uid": info.series_uid,
        "key_images": [k + 1 for k in key_images(inp)],
        "measurements": len(inp.measurements),
        "ai_results": len(inp.ai_results),
        "records": _records_summary(inp.records),
    }
    if args.json:
        print_json(summary)
    else:
        print(
            f"{out}: report with {len(key_images(inp))} key images, "
            f"{len(inp.measurements)} measurements, {len(inp.ai_results)} AI results"
        )
    return 0


def _records(path: str, info: object) -> object:
    """The records section of the report (MedviewError when the records cannot be read)."""
    from pathlib import Path

    from medview.records import load_records
    from medview.results.report_records import records_section

    if path.lower().endswith(".csv") and not (Path(path).parent / "patients.csv").exists():
        from medview.records.cgm import load_cgm_csv

        records = load_cgm_csv(path)
    else:
        records = load_records(path)
    return records_section(records, info)


def _records_summary(sec: object) -> dict[str, object] | None:
    if sec is None:
        return None
    fc = getattr(sec, "forecast", None)
    res = getattr(sec, "suggestions", None)
    return {
        "patient": getattr(sec, "patient_id", "") or None,
        "link": getattr(sec, "link_message", ""),
        "forecast": None if fc is None else {"code": fc.code, "method": fc.method},
        "forecast_note": getattr(sec, "forecast_note", ""),
        "suggestions": [s.display for s in res.suggestions] if res is not None else [],
        "suggestions_note": getattr(sec, "suggestions_note", ""),
    }
