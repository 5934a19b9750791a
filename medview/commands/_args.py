"""The options that several commands take, each defined once (argparse only, no heavy
imports): ``add_db(parser)``, ``add_json(parser, help)``, ``add_model(parser, help)``...

A helper takes the command's own help text where the commands word it differently; the
flag, metavar, type, default and choices are the helper's, so ``--db FILE`` or
``--model NAME`` (repeatable) mean the same in every command.
"""

from __future__ import annotations

import argparse
from typing import Any, Protocol

DB_HELP = "database file (default: per-user data folder, or $MEDVIEW_DB)"
STUDY_DB_HELP = "study database (default: per-user)"
SERIES_HELP = "which series of PATH (default: the first)"
DEVICE_HELP = "device for --model (auto, cpu, cuda)"
PROJECTIONS = ("mip", "minip", "avg")


class Options(Protocol):
    """A parser or an argument group (mutually exclusive or not): what has ``add_argument``."""

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action: ...


def add_actions(
    parser: argparse.ArgumentParser, dest: str = "action"
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The ``ACTION`` sub-commands of a command (``models list``, ``pacs echo``...)."""
    return parser.add_subparsers(dest=dest, metavar="ACTION")


def add_path(p: Options, help: str, nargs: str | None = None) -> None:
    """The positional ``PATH`` (one file or folder) as ``args.path``."""
    p.add_argument("path", nargs=nargs, metavar="PATH", help=help)


def add_paths(p: Options, help: str | None = None, nargs: str = "+") -> None:
    """The positional ``PATH ...`` as ``args.paths``."""
    p.add_argument("paths", nargs=nargs, metavar="PATH", help=help)


def add_out(p: Options, metavar: str | None, help: str, required: bool = False) -> None:
    """``--out`` (the file or folder written)."""
    p.add_argument("--out", required=required, metavar=metavar, help=help)


def add_flag(p: Options, flag: str, help: str) -> None:
    """A switch: ``args.<flag>`` is True when given, else False."""
    p.add_argument(flag, action="store_true", help=help)


def add_json(p: Options, help: str = "print JSON") -> None:
    """``--json``: machine-readable output instead of text."""
    add_flag(p, "--json", help)


def add_db(p: Options, help: str = DB_HELP) -> None:
    """``--db FILE``: the study database (default: the per-user one)."""
    p.add_argument("--db", metavar="FILE", help=help)


def add_series(p: Options, help: str = SERIES_HELP) -> None:
    """``--series UID``: one series of PATH."""
    p.add_argument("--series", metavar="UID", help=help)


def add_model(p: Options, help: str, device: bool = False) -> None:
    """``--model NAME`` (repeatable); with ``device``, :func:`add_device` too."""
    p.add_argument("--model", action="append", metavar="NAME", help=help)
    if device:
        add_device(p)


def add_device(p: Options, help: str = DEVICE_HELP, choices: list[str] | None = None) -> None:
    """``--device``: where the AI models run (default auto)."""
    p.add_argument("--device", default="auto", choices=choices, help=help)


def add_records(p: Options, help: str, required: bool = False) -> None:
    """``--records PATH``: patient records (FHIR, Synthea CSV, CGM CSV)."""
    p.add_argument("--records", required=required, metavar="PATH", help=help)


def add_patient(p: Options, help: str, metavar: str = "ID") -> None:
    """``--patient ID``: one patient of the records (or of the study database)."""
    p.add_argument("--patient", metavar=metavar, help=help)


def add_cgm_unit(p: Options, help: str) -> None:
    """``--unit``: the glucose unit of a CGM file that names none (default mg/dL)."""
    p.add_argument("--unit", default="mg/dL", help=help)


def add_k(p: Options, help: str) -> None:
    """``--k``: how many results (default 5)."""
    p.add_argument("--k", type=int, default=5, help=help)


def add_projection(p: Options, help: str, slab_help: str) -> None:
    """``--projection mip|minip|avg`` and its ``--slab MM`` (the viewer's and render's)."""
    p.add_argument("--projection", choices=list(PROJECTIONS), help=help)
    p.add_argument("--slab", type=float, metavar="MM", help=slab_help)
