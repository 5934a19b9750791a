"""``medview import PATH``: index studies into the local database (headers only)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from medview.commands._args import add_db, add_flag, add_json, add_paths

if TYPE_CHECKING:
    from medview.io import SeriesInfo

HELP = "index files, folders or DICOMDIRs into the local study database"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_paths(parser)
    add_db(parser)
    add_json(parser, "print the import report as JSON")
    add_flag(
        parser,
        "--cache",
        "also decode the compressed images into the pixel cache, so they open fast "
        "(bound: $MEDVIEW_PIXEL_CACHE_MB)",
    )


def run(args: argparse.Namespace) -> int:
    """Index the DICOM found under the paths; exit 2 with the reason when none was."""
    import sqlite3
    import sys

    from medview.commands._common import (
        error,
        not_dicom_reason,
        nothing_found,
        open_database,
        print_json,
    )
    from medview.errors import json_safe, printable
    from medview.io import scan

    db = open_database(args.db)
    result = scan(args.paths)
    try:
        report = db.add_series(result.series)
    except sqlite3.Error as exc:
        return error(f"{db.path}: could not write to the study database ({exc})")
    report.errors = list(result.errors)
    report.files += len(result.errors)
    skipped = [s for s in result.series if s.kind != "dicom"]
    cached = _fill_cache(result.series) if args.cache and report.instances else {}
    if args.json:
        print_json(json_safe(report.as_dict() | {"database": str(db.path)} | cached))
    elif report.instances:
        print(
            f"indexed {report.instances} image(s) in {report.series} series of {report.studies} "
            f"study(ies) ({report.new_instances} new) into {db.path}"
        )
        if cached:
            c = cached["cache"]
            print(f"pixel cache: {c['written']} image(s) decoded, {c['already']} already there")
    lines = [not_dicom_reason(s.instances[0].path, s.kind) for s in skipped if s.instances]
    for e in report.errors:
        # a folder of CSV/JSON records is not empty: say what it holds
        lines.append(nothing_found(e.path, e.reason, "DICOM files"))
    if report.instances:
        for line in lines:
            print(f"medview: {printable(line)}", file=sys.stderr)
        return 0
    if len(lines) == 1:
        return error(lines[0])
    if not lines:
        return error(f"no DICOM files found under {', '.join(args.paths)}")
    for line in lines[:-1]:
        print(f"medview: {printable(line)}", file=sys.stderr)
    return error(f"nothing imported: {lines[-1]}")


def _fill_cache(series: list[SeriesInfo]) -> dict[str, Any]:
    """Decode the imported series' compressed images into the pixel cache."""
    from medview.io import cache

    have = written = 0
    if cache.default_cache() is not None:
        for s in series:
            if s.kind == "dicom":
                h, w = cache.warm(s.instances)
                have, written = have + h, written + w
    return {"cache": {"already": have, "written": written, "folder": str(cache.cache_dir())}}
