"""``medview notes``: findings in radiology reports and clinical notes, and their evaluation."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from functools import partial
from typing import TYPE_CHECKING

from medview.commands._args import add_db, add_flag, add_json, add_paths
from medview.commands._common import error

if TYPE_CHECKING:
    from medview.notes.model import NoteAnalysis

HELP = (
    "read reports and notes (text, FHIR bundles, IU XML, DICOM SR, folders): chest findings "
    "with present/absent/uncertain status; --evaluate against the IU reports' MeSH labels"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_paths(parser, "files or folders to read", "*")
    add_json(parser, "print JSON (one object per document)")
    parser.add_argument(
        "--evaluate",
        metavar="DIR_OR_TGZ",
        help="score the labels against the IU reports (folder of XML or .tar.gz)",
    )
    add_flag(parser, "--store", "also save the documents and their findings in the local database")
    parser.add_argument(
        "--search",
        metavar="LABEL",
        help="find stored reports/notes with this finding (e.g. nodule), newest first",
    )
    parser.add_argument(
        "--status",
        choices=["present", "absent", "uncertain"],
        default="present",
        help="with --search: the finding's status (default present: not negated, not hedged)",
    )
    parser.add_argument(
        "--since", metavar="YYYY-MM-DD", help="with --search: documents dated on or after this day"
    )
    add_db(parser, "database file (default: MEDVIEW_DB or the user's)")
    parser.add_argument(
        "--split",
        choices=["all", "tune", "test"],
        default="all",
        help="with --evaluate: all reports (default), or the fixed 70%% tune / 30%% test split",
    )


_err = partial(error, prog="medview notes")  # one line on stderr, exit 2


def _print_eval(d: dict) -> None:
    print(
        f"IU reports: {d['reports']} (split {d['split']}), {d['reports_per_second']:.0f} reports/s"
    )
    print(f"{'label':18s} {'precision':>9s} {'recall':>7s} {'F1':>6s} {'support':>8s}")
    for lab, v in d["labels"].items():
        print(
            f"{lab:18s} {v['precision']:9.3f} {v['recall']:7.3f} {v['f1']:6.3f} {v['support']:8d}"
        )
    m = d["micro"]
    print(f"{'micro':18s} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f}")
    print(f"{'macro F1':18s} {'':9s} {'':7s} {d['macro_f1']:6.3f}")


def _print_doc(a: NoteAnalysis) -> None:
    d = a.document
    head = (
        d.id + (f"  patient {d.patient}" if d.patient else "") + (f"  {d.date}" if d.date else "")
    )
    print(head)
    print(f"  normal: {'yes' if a.normal else 'no'}")
    for f in a.findings:
        if f.experiencer != "patient":
            continue
        hist = ", historical" if f.historical else ""
        print(f"  {f.label:17s} {f.status:9s} [{f.section}{hist}] {f.text!r} @{f.start}-{f.end}")
    for kind, items in (("problem", a.problems), ("medication", a.medications)):
        for m in items:
            print(f"  {kind:17s} {m.status:9s} [{m.section}] {m.display} ({m.code})")


def _search(args: argparse.Namespace) -> int:
    from datetime import date

    from medview.notes.cohort import search_cohort

    since = None
    if args.since:
        try:
            since = date.fromisoformat(args.since)
        except ValueError:
            return _err(f"--since must be YYYY-MM-DD, not {args.since!r}")
    try:
        hits = search_cohort(args.search, args.status, since, db_path=args.db)
    except ValueError as exc:
        return _err(str(exc))
    except (OSError, sqlite3.Error) as exc:
        return _err(f"{args.db or 'database'}: cannot read ({exc})")
    if args.json:
        print(json.dumps(hits, indent=2))
        return 0
    if not hits:
        print(f"no stored document has {args.search} {args.status}")
    for h in hits:
        hist = " (historical)" if h["historical"] else ""
        print(f"{h['date'] or '????-??-??'}  patient {h['patient'] or '-'}  {h['document']}")
        print(f"    {h['text']!r} [{h['section']}]{hist}")
        st = h.get("study")
        if st:
            print(f"    local study {st['study_date'] or '?'} {st['study_uid']}")
    return 0


def run(args: argparse.Namespace) -> int:
    from medview.errors import MedviewError

    if args.evaluate:
        from medview.notes.evaluate import evaluate

        try:
            result = evaluate(args.evaluate, split=args.split)
        except MedviewError as exc:
            return _err(str(exc))
        for p in result.problems:
            print(f"skipped {p}", file=sys.stderr)
        d = result.as_dict()
        if args.json:
            print(json.dumps(d, indent=2))
        else:
            _print_eval(d)
        return 0
    if args.search:
        return _search(args)
    if not args.paths:
        return _err(
            "give one or more PATHs (files or folders), --search LABEL or --evaluate DIR_OR_TGZ"
        )
    from medview.notes import analyze, read_documents

    res = read_documents(args.paths)
    if not res.documents:
        if not res.problems:
            return _err(f"{args.paths[0]}: no reports or notes found")
        if len(res.problems) == 1:
            return _err(str(res.problems[0]))
        return _err(f"none of {len(res.problems)} files could be read; first: {res.problems[0]}")
    for p in res.problems:
        print(f"skipped {p}", file=sys.stderr)
    out = [analyze(d) for d in res.documents]
    if args.store:
        from medview.notes.store import save_analyses

        try:
            n = save_analyses(out, args.db)
        except (OSError, sqlite3.Error) as exc:
            return _err(f"{args.db or 'database'}: cannot save ({exc})")
        print(f"saved {n} documents to the database", file=sys.stderr)
    if args.json:
        for a in out:
            print(json.dumps(a.as_dict()))
    else:
        for a in out:
            _print_doc(a)
    return 0
