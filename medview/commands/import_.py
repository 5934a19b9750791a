"""``medview import PATH``: index studies into the local database (headers only)."""

from __future__ import annotations

import argparse

HELP = "index files, folders or DICOMDIRs into the local study database"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument(
        "--db", metavar="FILE", help="database file (default: per-user data folder, or $MEDVIEW_DB)"
    )
    parser.add_argument("--json", action="store_true", help="print the import report as JSON")


def run(args: argparse.Namespace) -> int:
    import sys

    from medview.commands._common import print_json
    from medview.io.database import StudyDatabase

    db = StudyDatabase(args.db)
    report = db.import_path(args.paths)
    if args.json:
        print_json(report.as_dict() | {"database": str(db.path)})
    else:
        print(
            f"indexed {report.instances} image(s) in {report.series} series of {report.studies} "
            f"study(ies) ({report.new_instances} new) into {db.path}"
        )
    for e in report.errors:
        print(f"medview: {e}", file=sys.stderr)
    return 0 if report.instances else 2
