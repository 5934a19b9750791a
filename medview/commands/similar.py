"""``medview similar PATH``: the stored analysed images nearest to each image of PATH."""

from __future__ import annotations

import argparse

from medview.commands._args import add_db, add_json, add_k, add_path

PROG = "medview similar"
HELP = "find analysed images similar to PATH (embeddings stored by 'analyze --index')"
EPILOG = (
    "Runs MODEL (default pneumonia_cnn: its pooled features are the embedding) on each "
    "image of PATH and lists the K nearest images stored by 'medview analyze PATH --index' "
    "with the same model version, with their stored findings. --json: one object per "
    'query image: {"path", "index", "model", "version", "neighbours": [{"key", "path", '
    '"index", "distance", "findings"}]}.'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_path(parser, "image file or folder")
    add_k(parser, "neighbours per image (default 5)")
    parser.add_argument("--model", default="pneumonia_cnn", help="embedding model")
    add_db(parser, "database (default: the study database)")
    add_json(parser, "one JSON object per query image")


def run(args: argparse.Namespace) -> int:

    from medview.commands._common import error, need_paths, print_json
    from medview.errors import MedviewError

    need_paths(args.path, prog=PROG)
    if args.k < 1:
        return error("--k must be at least 1", prog=PROG)
    from medview.ai.inference import analyze_path
    from medview.ai.registry import get_model
    from medview.ai.similar import search

    try:
        info = get_model(args.model)
        results, problems = analyze_path(args.path, [info], device="cpu")
    except MedviewError as exc:
        return error(exc, prog=PROG)
    for line in problems:
        error(line, prog=PROG)
    usable = [r for r in results if r.latent is not None]
    if not usable:
        return error(args.path, f"no embedding from {args.model} for any image", prog=PROG)
    for r in usable:
        if r.latent is None:
            continue
        near = search(r.latent, r.model, r.version, args.k, db=args.db, exclude_key=r.key)
        if args.json:
            print_json(
                {
                    "path": r.path,
                    "index": r.index,
                    "model": r.model,
                    "version": r.version,
                    "neighbours": [n.as_json() for n in near],
                }
            )
            continue
        print(f"{r.path} [slice {r.index + 1}]: {len(near)} similar")
        for n in near:
            found = n.findings.get(r.model, {})
            print(f"  {n.distance:8.3f}  {n.path} [slice {n.index + 1}]  {found.get('predicted')}")
    return 0
