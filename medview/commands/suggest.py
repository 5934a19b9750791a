"""``medview suggest``: treatment suggestions from local records, and their evaluation."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from typing import Any

from medview.commands._args import add_flag, add_json, add_k, add_patient, add_records
from medview.commands._common import error

HELP = (
    "suggest treatments for a patient from local records (similar patients + "
    "condition-linked evidence), or --evaluate them leave-one-out against popularity"
)

KINDS = ("medication", "procedure", "careplan")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_records(parser, "FHIR .json/.ndjson file or folder, or a Synthea CSV folder", required=True)
    add_patient(parser, "record patient id (or an identifier/MRN)")
    add_k(parser, "number of suggestions / cut-off (5)")
    parser.add_argument(
        "--condition",
        nargs="+",
        action="extend",
        default=[],
        metavar="SNOMED",
        help="working condition(s) to add to the patient's (SNOMED CT codes)",
    )
    parser.add_argument(
        "--kind",
        nargs="+",
        action="extend",
        choices=KINDS,
        default=[],
        help="only suggest these kinds (default: all)",
    )
    parser.add_argument(
        "--min-support",
        type=int,
        default=3,
        metavar="N",
        help="distinct supporting patients a treatment needs before it is suggested (3)",
    )
    add_flag(
        parser, "--evaluate", "leave-one-out hit-rate@k and NDCG@k of the method and of popularity"
    )
    add_json(parser)


_err = partial(error, prog="medview suggest")  # one line on stderr, exit 2


def _print_eval(d: dict) -> None:
    k = d["k"]
    print(f"leave-one-out over {d['patients']} patients (one current treatment hidden each), k={k}")
    print(f"{'':12s} {'hit-rate@' + str(k):>12s} {'NDCG@' + str(k):>10s}")
    for name in ("method", "popularity"):
        m = d[name]
        print(f"{name:12s} {m['hit_rate']:12.3f} {m['ndcg']:10.3f}")
    pop = d["popularity"]["hit_rate"]
    if pop > 0:
        print(f"hit-rate ratio method/popularity: {d['method']['hit_rate'] / pop:.2f}x")
    saf = d.get("safety") or {}
    if saf:
        by = ", ".join(f"{r} {n}" for r, n in saf["hidden_removed_by"].items()) or "none"
        print(
            f"hidden treatments the method removed (safety checks, minimum support "
            f"{saf['min_support']}): {saf['hidden_removed']} ({by}); counted as misses"
        )


def _print_result(res: Any, records: Any) -> None:
    p = records.patients.get(res.patient)
    if p is not None:
        born = p.birth_date.isoformat() if p.birth_date else "?"
        print(f"Patient {p.id}: {p.name or '(no name)'}, sex {p.sex or '?'}, born {born}")
    else:
        print(f"Patient {res.patient}")
    print(f"NOTE: {res.notice}")
    if res.message:
        print(res.message.strip())
    if res.conditions:
        print("Conditions:")
        for c in res.conditions:
            tag = "working" if c["working"] else ("active" if c["active"] else "resolved")
            print(f"  - {c['display']} ({c['code']}) [{tag}]")
    print(f"Current treatments ({len(res.current)}, never suggested):")
    for t in res.current:
        print(f"  - [{t['kind']}] {t['display']} ({t['code']}) since {t['first']}")
    print(f"Past treatments: {len(res.past)} (never suggested)")
    if res.status != "ok":
        print(f"Status: {res.status}")
        return
    print("Suggestions:")
    for i, s in enumerate(res.suggestions, 1):
        print(f"  {i}. [{s.kind}] {s.display} ({s.code})  score {s.score:.2f}")
        for e in s.evidence:
            print(f"       - {e}")
        for f in s.flags:
            src = f" [{f['source']}]" if f["source"] else ""
            print(f"       ! flagged ({f['rule']}): {f['reason']}{src}")
    _print_removed(res.removed)
    if res.similar:
        print("Most similar patients:")
        for sp in res.similar:
            shared = ", ".join(sp.shared_conditions[:5]) or "no shared conditions"
            print(f"  - {sp.patient} (similarity {sp.similarity:.2f}): {shared}")


def _print_removed(removed: list[dict]) -> None:
    """Candidates ranked above the last suggestion that a check removed, with reasons."""
    if not removed:
        return
    low = [r for r in removed if {f["rule"] for f in r["findings"]} == {"min-support"}]
    other = [r for r in removed if r not in low]
    print(f"Not suggested ({len(removed)} candidates removed):")
    for r in other:
        print(f"  - [{r['kind']}] {r['display']} ({r['code']})")
        for f in r["findings"]:
            src = f" [{f['source']}]" if f["source"] else ""
            print(f"       x {f['rule']}: {f['reason']}{src}")
    if low:
        names = ", ".join(r["display"] for r in low[:5])
        more = f" and {len(low) - 5} more" if len(low) > 5 else ""
        print(f"  - {len(low)} below the minimum support: {names}{more}")


def run(args: argparse.Namespace) -> int:
    from medview.errors import MedviewError
    from medview.records import link_patient, load_records
    from medview.treatments import Params, Recommender, leave_one_out

    if args.k < 1:
        return _err("--k must be at least 1")
    if args.min_support < 1:
        return _err("--min-support must be at least 1")
    params = Params(min_support=args.min_support)
    try:
        records = load_records(args.records)
    except MedviewError as exc:
        return _err(str(exc))
    for prob in records.problems:
        print(f"skipped {prob}", file=sys.stderr)
    try:
        from medview.treatments.safety import SafetyRules

        SafetyRules.load()
    except MedviewError as exc:
        return _err(str(exc))
    if args.evaluate:
        result = leave_one_out(records, k=args.k, params=params).as_dict()
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            _print_eval(result)
        return 0
    if not args.patient:
        return _err("give --patient ID (or --evaluate)")
    link = link_patient(records, args.patient)
    if not link.matched:
        return _err(f"{args.records}: patient {args.patient!r}: {link.message}")
    rec = Recommender.from_records(records, params)
    names = rec.data.condition_display
    working = [(code, names.get(code, "")) for code in args.condition]
    pid = link.record_patient_id or args.patient
    res = rec.suggest(pid, k=args.k, working=working, kinds=args.kind or None)
    if args.json:
        print(json.dumps(res.as_dict(), indent=2))
    else:
        _print_result(res, records)
    return 0
