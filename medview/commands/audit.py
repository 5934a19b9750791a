"""``medview audit``: read the audit log (who exported, analysed, reported what, and when)."""

from __future__ import annotations

import argparse

from medview.commands._args import add_json

HELP = "show the audit log (exports, SRs, reports, analyses), newest last"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", metavar="UID", help="only events of this Study Instance UID")
    parser.add_argument(
        "--since", metavar="DATE", help="only events at or after DATE (YYYY-MM-DD or ISO time)"
    )
    parser.add_argument(
        "--log", metavar="FILE", help="audit log (default: per-user data folder, $MEDVIEW_AUDIT)"
    )
    add_json(parser, "print JSON: {events: [...], notes}")


def run(args: argparse.Namespace) -> int:
    import sys

    from medview.commands._common import error, print_json
    from medview.results import audit

    since = None
    if args.since:
        try:
            since = audit.parse_since(args.since)
        except ValueError as exc:
            return error(str(exc))
    try:
        log = audit.read(args.log, study=args.study, since=since)
    except OSError as exc:
        return error(f"{exc.filename or args.log}: cannot be read ({exc.strerror or exc})")
    if args.json:
        print_json(log.as_dict())
    else:
        if not log.events:
            print("no audit events")
        for ev in log.events:
            model = ev.get("model")
            if isinstance(model, dict):
                model = f"{model.get('name')} {model.get('version')}"
            elif isinstance(model, list):
                model = ", ".join(f"{m.get('name')} {m.get('version')}" for m in model)
            parts = [
                str(ev.get("time", "")),
                str(ev.get("user", "")),
                str(ev.get("action", "")),
                str(ev.get("study_uid") or "-"),
            ]
            if model:
                parts.append(f"model {model}")
            if ev.get("output"):
                parts.append(f"-> {ev['output']}")
            print("  ".join(parts))
    for note in log.notes:
        print(f"medview: {note}", file=sys.stderr)
    return 0
