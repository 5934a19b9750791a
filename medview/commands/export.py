"""``medview export``: copy DICOM files to a folder or zip, optionally de-identified."""

from __future__ import annotations

import argparse

from medview.commands._args import add_flag, add_json, add_out, add_paths

HELP = "export DICOM files to a folder or zip, optionally anonymised (DICOM PS3.15 Annex E)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_paths(parser, "DICOM files or folders")
    add_out(parser, "DIR", "output folder (or FILE.zip)", required=True)
    add_flag(
        parser,
        "--anonymize",
        "apply the Basic Application Level Confidentiality Profile (PS3.15 Annex E)",
    )
    parser.add_argument(
        "--keep-dates-shifted",
        type=int,
        metavar="DAYS",
        help="Retain Longitudinal Temporal Information option: dates moved by DAYS "
        "(negative = earlier) instead of removed",
    )
    add_flag(
        parser,
        "--keep-patient-characteristics",
        "Retain Patient Characteristics option (sex, age, size, weight, ...)",
    )
    add_flag(parser, "--zip", "write one zip (DIR/export.zip, or --out FILE.zip)")
    add_json(parser, "print the export report as JSON")


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    from medview.commands._common import error, need_paths, print_json

    if (args.keep_dates_shifted is not None or args.keep_patient_characteristics) and (
        not args.anonymize
    ):
        return error("--keep-dates-shifted and --keep-patient-characteristics need --anonymize")
    need_paths(*args.paths)
    if os.path.isfile(args.out) and not (args.zip and args.out.lower().endswith(".zip")):
        return error(f"{args.out}: is a file; --out must be a folder")
    from medview.results.export import export_paths
    from medview.results.jobs import audit_export

    try:
        report = export_paths(
            args.paths,
            args.out,
            anonymize=args.anonymize,
            shift_days=args.keep_dates_shifted,
            keep_patient_characteristics=args.keep_patient_characteristics,
            zip_output=args.zip,
        )
    except OSError as exc:
        return error(f"{exc.filename or args.out}: {exc.strerror or exc}")
    destination = report.zip_path or os.path.abspath(args.out)
    note = audit_export(report)  # one event per exported study
    if note:
        print(f"medview: {note}", file=sys.stderr)
    if args.json:
        print_json(report.as_dict())
    else:
        what = "anonymised " if report.anonymized else ""
        print(f"{len(report.written)} files {what}exported to {destination}")
        for problem in report.skipped:
            print(f"skipped {problem}")
        for w in report.warnings:
            print(f"warning: {w}")
    if not report.written:
        reason = report.skipped[0] if report.skipped else "no files found"
        return error(f"nothing exported ({reason})")
    return 0
