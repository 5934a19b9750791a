"""``medview --self-test``: a headless check of an installed (or source) medview.

It exercises what a clinic install needs, from the bundled files only and with no
network: read a CT slice from bundled sample DICOM and render it, decode the
compressed transfer syntaxes (RLE, JPEG-LS, JPEG 2000, JPEG) through the pixel
plugins, decode in the worker-process pool (which must work in a frozen app),
run every bundled AI model once on the rendered slice, import a small generated
FHIR bundle, forecast glucose with the bundled LSTM and a lab value with the
Gaussian process, suggest treatments, check that every shared library of Qt's xcb
platform plugin resolves (what a real window on Linux needs; the offscreen check
cannot see it), and build the main window offscreen.

One line per check is printed (``ok`` or ``FAIL`` + the reason), then a summary.
Exit status 0 when every check passed, 1 naming the checks that failed. A missing
model or module is a failed check, never a crash.

Modules: :mod:`.base` (sample files, context, results), :mod:`.checks` (the core),
:mod:`.fixtures` (the generated FHIR bundle), :mod:`.xcb` (Qt's platform plugin),
:mod:`.gui` (the offscreen window); this module runs them and prints the report.
``medview.selftest`` is this module under its old name (packaging/medview.spec).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from medview.commands.selftest.base import (
    AI_MODELS,
    FORECAST_MODEL,
    LOSSLESS_VARIANTS,
    LOSSY_SAMPLE,
    SAMPLE_CT,
    SAMPLE_FILES,
    SAMPLE_MR,
    CheckFailed,
    CheckResult,
    Context,
    one_line,
    sample_dir,
)
from medview.commands.selftest.checks import (
    ai_check,
    check_codecs,
    check_decoder_pool,
    check_dicom,
    check_forecast_glucose,
    check_forecast_lab,
    check_records,
    check_render,
    check_suggest,
    check_torch,
)
from medview.commands.selftest.gui import check_gui
from medview.commands.selftest.xcb import (
    BASE_PACKAGES,
    DEBIAN_PACKAGES,
    XCB_PLUGIN,
    check_xcb_platform,
    missing_libraries,
    needed_libraries,
    xcb_fix_message,
    xcb_plugin_path,
)

__all__ = [
    "AI_MODELS",
    "BASE_PACKAGES",
    "CHECKS",
    "DEBIAN_PACKAGES",
    "FORECAST_MODEL",
    "LOSSLESS_VARIANTS",
    "LOSSY_SAMPLE",
    "SAMPLE_CT",
    "SAMPLE_FILES",
    "SAMPLE_MR",
    "XCB_PLUGIN",
    "CheckFailed",
    "CheckResult",
    "check_xcb_platform",
    "describe_runtime",
    "iter_checks",
    "missing_libraries",
    "needed_libraries",
    "run_self_test",
    "sample_dir",
    "xcb_fix_message",
    "xcb_plugin_path",
]

CHECKS: list[tuple[str, Callable[[Context], str]]] = [
    ("sample DICOM", check_dicom),
    ("render slice", check_render),
    ("compressed DICOM", check_codecs),
    ("decoder processes", check_decoder_pool),
    ("torch", check_torch),
    *[(f"model {name}", ai_check(name)) for name in AI_MODELS],
    ("records import", check_records),
    (f"forecast {FORECAST_MODEL}", check_forecast_glucose),
    ("forecast lab (GP)", check_forecast_lab),
    ("suggest", check_suggest),
    ("Qt xcb platform", check_xcb_platform),
    ("GUI (offscreen)", check_gui),
]


def iter_checks(include_gui: bool = True) -> Iterator[CheckResult]:
    """Run every check in order, yielding results as they finish."""
    with tempfile.TemporaryDirectory(prefix="medview-selftest-") as tmp:
        ctx = Context(Path(tmp))
        for name, fn in CHECKS:
            if fn is check_gui and not include_gui:
                continue
            t0 = time.perf_counter()
            try:
                detail, ok = fn(ctx), True
            except CheckFailed as exc:
                detail, ok = str(exc), False
            except ModuleNotFoundError as exc:
                detail, ok = f"module {exc.name or exc} is missing from the install", False
            except Exception as exc:  # noqa: BLE001 - every problem becomes one line
                detail, ok = f"{type(exc).__name__}: {one_line(exc)}", False
                if os.environ.get("MEDVIEW_SELFTEST_TRACEBACK"):
                    traceback.print_exc()
            yield CheckResult(name, ok, detail, time.perf_counter() - t0)


def describe_runtime() -> str:
    """Version, frozen or source, Python, and the torch build if installed."""
    from medview import __version__

    kind = "frozen" if getattr(sys, "frozen", False) else "source"
    bits = [f"medview {__version__} ({kind})", f"Python {sys.version.split()[0]}"]
    try:
        from importlib.metadata import version

        bits.append(f"torch {version('torch')}")
    except Exception:  # noqa: BLE001 - metadata may be absent in a frozen app
        pass
    return ", ".join(bits)


def run_self_test(out: TextIO | None = None, include_gui: bool = True) -> int:
    """Run the checks, print one line each and a summary; 0 if all passed, else 1."""
    out = out or sys.stdout
    t0 = time.perf_counter()
    print(f"medview self-test: {describe_runtime()}", file=out, flush=True)
    results = []
    for r in iter_checks(include_gui=include_gui):
        results.append(r)
        print(r.line(), file=out, flush=True)
    failed = [r.name for r in results if not r.ok]
    took = time.perf_counter() - t0
    if failed:
        print(
            f"self-test FAILED: {len(failed)} of {len(results)} checks failed: "
            f"{', '.join(failed)} ({took:.1f} s)",
            file=out,
            flush=True,
        )
        return 1
    print(f"self-test passed: {len(results)} checks ({took:.1f} s)", file=out, flush=True)
    return 0
