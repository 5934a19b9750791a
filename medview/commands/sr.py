"""``medview sr``: a DICOM SR (TID 1500 Measurement Report) of a series' measurements and AI
findings, or (``--import``) an SR's measurements back into the study database."""

from __future__ import annotations

import argparse
from typing import Any

from medview.commands import _args

HELP = "write a DICOM SR (TID 1500) of a series' measurements and AI findings, or import one"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _args.add_path(parser, "the series (file or folder); with --import, the SR")
    _args.add_out(parser, "FILE.dcm", "the SR file to write")
    parser.add_argument(
        "--kos-out",
        metavar="FILE.dcm",
        help="also (or only) write a Key Object Selection document of the series' key images",
    )
    _args.add_series(parser)
    _args.add_model(
        parser,
        "also run this AI model on the series and report its findings (repeatable)",
        device=True,
    )
    parser.add_argument(
        "--import",
        dest="import_",
        action="store_true",
        help="read the SR at PATH and store its measurements in the study database",
    )
    _args.add_db(parser, _args.STUDY_DB_HELP)
    _args.add_json(parser, "print a JSON summary")


def run(args: argparse.Namespace) -> int:
    from medview.commands._common import error, need_paths, open_database

    need_paths(args.path)
    from medview.results.sr import SRError

    db = open_database(args.db)
    try:
        if args.import_:
            return _import(args, db)
        if not args.out and not args.kos_out:
            return error("--out FILE.dcm or --kos-out FILE.dcm is required (or --import)")
        return _write(args, db)
    except SRError as exc:
        return error(str(exc))
    finally:
        db.close()


def _import(args: argparse.Namespace, db: Any) -> int:
    from medview.commands._common import print_json
    from medview.results.sr import import_sr, read_sr

    contents = read_sr(args.path)
    stored = import_sr(args.path, db)
    if args.json:
        print_json(contents.as_dict() | {"stored": stored})
    else:
        print(
            f"{args.path}: {len(contents.measurements)} measurements ({stored} new stored), "
            f"{len(contents.findings)} AI findings"
        )
    return 0


def _write(args: argparse.Namespace, db: Any) -> int:
    from medview.commands._common import error, print_json
    from medview.io import scan
    from medview.results.sr import image_refs

    res = scan(args.path)
    series = [s for s in res.series if s.kind == "dicom"]
    if args.series:
        series = [s for s in series if s.series_uid == args.series]
    if not series:
        what = f"no series {args.series}" if args.series else "no DICOM series"
        return error(f"{args.path}: {what}")
    info = series[0]
    paths = sorted({str(i.path) for i in info.instances})
    refs = image_refs(paths)
    summary: dict[str, Any] = {"series_uid": info.series_uid}
    if args.out:
        code = _write_sr(args, db, info, refs, summary)
        if code:
            return code
    if args.kos_out:
        code = _write_kos(args, db, info, refs, summary)
        if code:
            return code
    if args.json:
        print_json(summary)
    return 0


def _write_sr(args: argparse.Namespace, db: Any, info: Any, refs: Any, summary: dict) -> int:
    from medview.commands._common import error
    from medview.io import load_series
    from medview.results.sr import build_sr, finding_from_result, write_sr

    rows = []
    for inst in info.instances:
        rows += db.measurements(inst.sop_uid)
    findings = []
    models = []
    if args.model:
        from medview.ai.inference import run_on_volume
        from medview.errors import MedviewError

        try:
            vol = load_series(info)
            results = run_on_volume(
                vol, list(range(vol.array.shape[0])), args.model, device=args.device, heatmaps=False
            )
        except MedviewError as exc:
            return error(str(exc))
        findings = [finding_from_result(r) for r in results]
        seen = set()
        for f in findings:
            if f.model not in seen:
                seen.add(f.model)
                models.append({"name": f.model, "version": f.version, "sha256": f.sha256})
    sr = build_sr(refs, rows, findings)
    try:
        out = write_sr(sr, args.out)
    except OSError as exc:
        return error(f"{args.out}: cannot be written ({exc.strerror or exc})")
    _audit(info, out, model=models or None, measurements=len(rows), findings=len(findings))
    summary.update(
        out=str(out),
        sop_instance_uid=str(sr.SOPInstanceUID),
        measurements=len(rows),
        findings=len(findings),
    )
    if not args.json:
        print(f"{out}: SR with {len(rows)} measurements and {len(findings)} AI findings")
    return 0


def _write_kos(args: argparse.Namespace, db: Any, info: Any, refs: Any, summary: dict) -> int:
    from medview.commands._common import error
    from medview.results.key_images import KeyImageDatabase
    from medview.results.kos import build_kos, write_kos

    keydb = KeyImageDatabase(db.path)
    try:
        sops = {i.sop_uid for i in info.instances}
        keys = [k for k in keydb.for_series(info.series_uid) if k.sop_uid in sops]
        flagged = keydb.flagged(sops)  # images flagged before their series UID was known
        keys += [k for k in _as_keys(flagged, info) if k not in keys]
    finally:
        keydb.close()
    kos = build_kos(refs, keys)
    try:
        out = write_kos(kos, args.kos_out)
    except OSError as exc:
        return error(f"{args.kos_out}: cannot be written ({exc.strerror or exc})")
    count = len(kos.ContentSequence) - sum(
        1 for i in kos.ContentSequence if i.get("ValueType") != "IMAGE"
    )
    _audit(info, out, model=None, key_images=count)
    summary.update(kos_out=str(out), kos_sop_instance_uid=str(kos.SOPInstanceUID), key_images=count)
    if not args.json:
        print(f"{out}: Key Object Selection with {count} key images")
    return 0


def _as_keys(flagged: set[tuple[str, int]], info: Any) -> list[Any]:
    from medview.results.key_images import KeyImage

    return [KeyImage(s, f, info.series_uid, info.study_uid) for s, f in sorted(flagged)]


def _audit(info: Any, out: Any, model: Any, **extra: Any) -> None:
    import sys

    from medview.results import audit

    try:
        audit.record(
            "sr",
            study_uid=info.study_uid,
            series_uids=[info.series_uid],
            model=model,
            output=str(out.resolve()),
            **extra,
        )
    except OSError as exc:
        print(f"medview: audit log not written ({exc})", file=sys.stderr)
