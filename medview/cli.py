"""The ``medview`` command line.

``medview [PATH ...]`` starts the workstation (see ``medview gui --help``);
``medview COMMAND ...`` runs a headless command over the same core the GUI uses.
Each command lives in :mod:`medview.commands` as a light module (argparse only)
that imports heavy libraries inside its ``run`` function, so ``--help`` is fast.

Exit status: 0 success, 1 a check failed (e.g. self-test), 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from medview import __version__
from medview.commands._args import add_projection
from medview.commands._common import CommandError

# name -> module under medview.commands; each module defines
#   HELP: str, add_arguments(parser) and run(args) -> int
COMMANDS: dict[str, str] = {
    "info": "info",
    "render": "render",
    "import": "import_",
    "studies": "studies",
    "analyze": "analyze",
    "train": "train",
    "forecast": "forecast",
    "cgm": "cgm",
    "suggest": "suggest",
    "notes": "notes",
    "receive": "receive",
    "pacs": "pacs",
    "export": "export",
    "sr": "sr",
    "report": "report",
    "audit": "audit",
    "models": "models",
    "similar": "similar",
    "batch": "batch",
}


def _load(name: str) -> ModuleType:
    """The module of command ``name`` (a missing one raises: a broken install)."""
    return importlib.import_module(f"medview.commands.{COMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medview",
        description=(
            "Offline imaging workstation. Without a command, opens the viewer with "
            "PATHs (files, folders, DICOMDIR). Commands run headless."
        ),
        epilog="GUI options: medview [PATH ...] [--screenshot FILE.png] [--layout L] "
        "[--preset P] [--projection mip|minip|avg [--slab MM]] [--self-test]. Run 'medview COMMAND --help' for each command.",
    )
    parser.add_argument("--version", action="version", version=f"medview {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = _load(name)
        epilog = getattr(mod, "EPILOG", None)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP, epilog=epilog)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def build_gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medview",
        description="Open the medview workstation, optionally with studies.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="files, folders or DICOMDIRs")
    parser.add_argument("--version", action="version", version=f"medview {__version__}")
    parser.add_argument(
        "--screenshot",
        metavar="FILE.png",
        help="open the window, wait until loading finished, save a screenshot (and FILE.json: "
        "layout, and per viewport series, plane, index, projection, slab, window, zoom), exit",
    )
    parser.add_argument(
        "--layout", choices=["1x1", "1x2", "2x2", "mpr", "3d"], help="viewport layout (no protocol)"
    )
    parser.add_argument("--preset", help="window preset, e.g. lung, bone, brain")
    add_projection(
        parser,
        "show a slab projection in every viewport the study opens in",
        "slab thickness for --projection (default: whole)",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="headless check of the installed app: load, render, models, forecast, suggest",
    )
    return parser


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's exit-time flush cannot raise again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # decoder worker processes in a frozen (PyInstaller) app
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and (args_list[0] in COMMANDS or args_list[0] in ("-h", "--help")):
        try:
            parser = build_parser()
        except ModuleNotFoundError as exc:  # a command module missing from the install
            print(f"medview: broken install: {exc}", file=sys.stderr)
            return 1
        args = parser.parse_args(args_list)
        if not getattr(args, "command", None):
            parser.print_help()
            return 0
        try:
            return int(args._run(args) or 0)
        except CommandError as exc:  # a shared helper's one-line bad input
            return exc.report()
        except KeyboardInterrupt:
            print("medview: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # the reader went away (`medview ... | head`): not an error
            _silence_stdout()
            return 0
    args = build_gui_parser().parse_args(args_list)
    if args.self_test:
        from medview.commands.selftest import run_self_test

        return run_self_test()
    from medview.ui.app import run_gui

    return run_gui(args)


if __name__ == "__main__":
    sys.exit(main())
