"""``medview studies``: query the local study database."""

from __future__ import annotations

import argparse

from medview.commands._args import add_db, add_json, add_patient

HELP = "list studies in the local database (filter by patient, date range, modality)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_patient(parser, "patient name or ID contains TEXT", metavar="TEXT")
    parser.add_argument(
        "--from", dest="date_from", metavar="YYYYMMDD", help="study date on or after"
    )
    parser.add_argument("--to", dest="date_to", metavar="YYYYMMDD", help="study date on or before")
    parser.add_argument("--modality", metavar="M", help="e.g. CT, MR, CR")
    add_db(parser)
    add_json(parser, "print JSON: {studies: [...]}")


def run(args: argparse.Namespace) -> int:
    import sqlite3

    from medview.commands._common import error, open_database, print_json
    from medview.errors import json_safe, printable

    try:
        db = open_database(args.db)
        rows = db.studies(
            text=args.patient,
            date_from=args.date_from,
            date_to=args.date_to,
            modality=args.modality,
        )
    except ValueError as exc:
        return error(str(exc))
    except sqlite3.Error as exc:
        return error(f"{args.db or 'the study database'}: cannot be read ({exc})")
    if args.json:
        print_json(json_safe({"studies": rows}))
        return 0
    if not rows:
        print("no studies")
    for r in rows:
        # names and descriptions come from files: escape control characters (issue 18)
        t = {k: printable(v) if isinstance(v, str) else v for k, v in r.items()}
        print(
            f"{t['study_date'] or '--------'}  {t['patient_name'] or '-':<28} {t['patient_id'] or '-':<14} "
            f"{t['modalities'] or '-':<8} {t['series_count']} series, {t['instance_count']} images  "
            f"{t['description'] or ''}  [{t['study_uid']}]"
        )
    return 0
