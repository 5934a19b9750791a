"""``medview batch analyze SOURCE...``: analyse an archive on Dask distributed, restartably."""

from __future__ import annotations

import argparse

from medview.commands._args import add_actions, add_db, add_json, add_model

PROG = "medview batch"
HELP = "analyse folders at scale on Dask (LocalCluster or a running scheduler), restartable"
EPILOG = (
    "Files already analysed by the same model versions (table ai_done of the study "
    "database) are skipped, so a run that was interrupted continues where it stopped. "
    "Results go to ai_results, embeddings to ai_embeddings (medview similar), one line to "
    "the audit log. --scheduler tcp://HOST:8786 uses a running Dask cluster (every worker "
    "needs medview installed with the same models); otherwise a LocalCluster of --workers "
    "single-threaded processes. Needs dask[distributed] (pip install 'medview[batch]')."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    an = add_actions(parser).add_parser(
        "analyze", help="run the AI models over SOURCE folders/files"
    )
    an.add_argument("sources", nargs="+", metavar="SOURCE", help="files or folders")
    add_model(an, "model (repeatable)")
    an.add_argument("--workers", type=int, default=2, help="LocalCluster workers (default 2)")
    an.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler")
    an.add_argument(
        "--chunk",
        type=int,
        default=64,
        help="files per Dask task (default 64: two batches of 32 single-image files)",
    )
    add_db(an, "database (default: the study database)")
    add_json(an, "print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    import sys

    from medview.commands._common import error, need_paths, print_json

    if args.action != "analyze":
        return error("an action is required: analyze", prog=PROG)
    need_paths(*args.sources, prog=PROG)
    if args.workers < 1 or args.chunk < 1:
        return error("--workers and --chunk must be at least 1", prog=PROG)
    try:
        import distributed  # noqa: F401
    except ImportError:
        return error("needs dask[distributed]: pip install 'medview[batch]'", prog=PROG)
    from medview.ai.batch import run_batch
    from medview.ai.registry import default_models, get_model
    from medview.errors import MedviewError
    from medview.tasks import TaskState

    def bar(frac: float, msg: str) -> None:
        filled = int(frac * 30)
        print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {msg}", end="", file=sys.stderr)

    try:
        models = [get_model(n) for n in args.model] if args.model else default_models()
        rep = run_batch(
            args.sources, models, args.workers, args.scheduler, args.db, args.chunk,
            state=TaskState(on_progress=bar),
        )  # fmt: skip
    except (MedviewError, OSError) as exc:
        return error(exc, prog=PROG)
    print("", file=sys.stderr)
    for line in rep.problems:
        error(line, prog=PROG, status=0)
    from medview.results import audit

    audit.record(
        "batch-analyze",
        model=[audit.model_info(m.name, m.version) for m in models],
        output=str(args.db or "study database"),
        sources=[str(s) for s in args.sources],
        files=rep.analysed_files,
        images=rep.images,
        skipped=rep.skipped,
    )
    if args.json:
        print_json(rep.as_json())
    else:
        print(
            f"{rep.analysed_files} file(s), {rep.images} image(s) analysed, {rep.skipped} "
            f"skipped (done before), {rep.seconds:.1f} s on {rep.scheduler} "
            f"({rep.workers} workers)"
        )
    return 0
