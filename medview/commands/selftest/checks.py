"""The self-test's checks of the core: DICOM, rendering, codecs, decoder processes, torch,
the bundled AI models, records, forecasts and suggestions (each returns a one-line detail
or raises :class:`CheckFailed`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from medview.commands.selftest.base import (
    GLUCOSE,
    HBA1C,
    LISINOPRIL,
    LOSSLESS_VARIANTS,
    LOSSY_SAMPLE,
    POOL_TIMEOUT_S,
    SAMPLE_CT,
    SAMPLE_MR,
    TARGET_PATIENT,
    CheckFailed,
    Context,
    one_line,
    sample,
)
from medview.commands.selftest.fixtures import fhir_bundle

T = TypeVar("T")


def _needed(value: T | None, missing: str) -> T:
    """``value``, or :class:`CheckFailed` ``missing`` when the check that sets it failed."""
    if value is None:
        raise CheckFailed(missing)
    return value


def check_dicom(ctx: Context) -> str:
    from medview.io import load_series, scan

    path = sample(SAMPLE_CT)
    res = scan(path)
    if res.errors:
        raise CheckFailed(str(res.errors[0]))
    if len(res.series) != 1:
        raise CheckFailed(f"{path}: expected 1 series, found {len(res.series)}")
    vol = load_series(res.series[0])
    if vol.array.shape != (1, 128, 128) or vol.modality != "CT" or vol.unit != "HU":
        raise CheckFailed(
            f"{path}: unexpected volume {vol.array.shape} {vol.modality} unit={vol.unit!r}"
        )
    hu = vol.modality_values(0)
    ctx.ct = vol
    return (
        f"{path.name}: CT {vol.array.shape[2]}x{vol.array.shape[1]}, "
        f"HU {float(hu.min()):.0f}..{float(hu.max()):.0f}"
    )


def check_render(ctx: Context) -> str:
    import numpy as np

    from medview.imaging.display import render_slice

    ct = _needed(ctx.ct, "no CT loaded (the DICOM check failed)")
    img = render_slice(ct, 0, window=(40.0, 400.0))
    if img.dtype != np.uint8 or img.shape != (128, 128):
        raise CheckFailed(f"render_slice gave {img.dtype} {img.shape}, expected uint8 (128, 128)")
    if float(img.std()) < 5.0:
        raise CheckFailed(f"rendered slice is nearly uniform (std {float(img.std()):.2f})")
    ctx.image = img
    return f"axial slice W40/L400 -> uint8 128x128, mean {float(img.mean()):.1f}"


def check_codecs(ctx: Context) -> str:
    import numpy as np

    from medview.io import load_path

    ref = load_path(sample(SAMPLE_MR)).array
    done = []
    for label, fname in LOSSLESS_VARIANTS:
        arr = load_path(sample(fname)).array
        if arr.shape != ref.shape or not np.array_equal(arr, ref):
            raise CheckFailed(f"{fname}: {label} decode differs from the uncompressed original")
        done.append(label)
    label, fname = LOSSY_SAMPLE
    col = load_path(sample(fname))
    if col.array.ndim != 4 or col.array.shape[-1] != 3 or float(col.array.std()) == 0.0:
        raise CheckFailed(f"{fname}: {label} decode gave {col.array.shape}")
    return (
        f"{', '.join(done)} lossless decoded equal to the original pixel for pixel; "
        f"{label} colour decoded"
    )


def check_decoder_pool(ctx: Context) -> str:
    import numpy as np

    from medview.io import decoders
    from medview.io.dicom import decode_file

    workers = decoders.decode_workers()
    if workers < 2:
        return f"skipped: MEDVIEW_DECODE_WORKERS={workers} (decoding in-process)"
    path = sample("MR_small_jp2klossless.dcm")
    ref, _ = decode_file(str(path))
    pool = decoders.decoder_pool()
    if pool is None:
        raise CheckFailed("decoder worker processes could not start (decoding in-process)")
    try:
        futs = [pool.submit(decode_file, str(path)) for _ in range(2)]
        arrs = [f.result(timeout=POOL_TIMEOUT_S)[0] for f in futs]
    except Exception as exc:  # noqa: BLE001 - a broken pool is the finding
        decoders.shutdown()
        raise CheckFailed(
            f"decoder worker processes failed ({type(exc).__name__}: {exc})"
        ) from None
    mp_ctx = getattr(pool, "_mp_context", None)  # the executor's multiprocessing context
    method = mp_ctx.get_start_method() if mp_ctx is not None else "?"
    # stop the workers now: if a later check crashed the process, orphaned workers would
    # keep its stdout open and hang whoever reads it
    decoders.shutdown()
    if not all(np.array_equal(a, ref) for a in arrs):
        raise CheckFailed("worker-process decode differs from in-process decode")
    return f"{workers} {method} workers decoded JPEG 2000 identically"


def check_torch(ctx: Context) -> str:
    """torch imports and runs: a convolution forward, backward and one optimiser step."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - e.g. a broken bundle
        # a half-imported torch can abort the process when imported again: remember it
        ctx.torch_error = f"{type(exc).__name__}: {one_line(exc)}"
        raise CheckFailed(f"torch does not import ({ctx.torch_error})") from None

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 16 * 16, 2),
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(8, 1, 16, 16)
    y = torch.randint(0, 2, (8,))
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    if not losses[-1] < losses[0]:
        raise CheckFailed(f"training loss did not fall ({losses[0]:.3f} -> {losses[-1]:.3f})")
    with torch.inference_mode():
        out = net(x.to(memory_format=torch.channels_last))
    if out.shape != (8, 2) or not bool(torch.isfinite(out).all()):
        raise CheckFailed(f"inference gave {tuple(out.shape)}")
    extra = ""
    if torch.cuda.is_available():  # a CUDA build on a GPU machine: check the device too
        a = torch.randn(256, 256, device="cuda")
        err = float((a @ a).cpu().sub(a.cpu() @ a.cpu()).abs().max())
        if not err < 1e-2:
            raise CheckFailed(f"CUDA matmul differs from CPU by {err:.3g}")
        extra = f", CUDA {torch.cuda.get_device_name(0)}"
    return (
        f"torch {torch.__version__}: 5 SGD steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
        f"{torch.get_num_threads()} threads{extra}"
    )


def ai_check(name: str) -> Callable[[Context], str]:
    def check(ctx: Context) -> str:
        from medview.ai.inference import analyze_images
        from medview.ai.preprocess import SourceImage
        from medview.ai.registry import ModelError, discover

        errors: list[str] = []
        models = discover(errors)
        info = models.get(name)
        if info is None:
            bad = [e for e in errors if name in e]
            if bad:
                raise CheckFailed(f"model {name} is broken: {bad[0]}")
            raise CheckFailed(f"model {name} is not installed (no models/{name}/metadata.json)")
        image = _needed(
            ctx.image, "no rendered slice to run the model on (the render check failed)"
        )
        if ctx.torch_error:
            raise CheckFailed(f"not run: torch does not import ({ctx.torch_error})")
        try:
            results = analyze_images(
                [SourceImage(path=SAMPLE_CT, index=0, image=image)], [info], device="auto"
            )
        except ModelError as exc:
            raise CheckFailed(str(exc)) from None
        if len(results) != 1:
            raise CheckFailed(f"model {name} returned {len(results)} results for 1 image")
        r = results[0]
        if r.probabilities is not None:
            vals = list(r.probabilities.values())
            if not all(0.0 <= v <= 1.0 for v in vals):
                raise CheckFailed(f"model {name} gave probabilities outside [0, 1]: {vals}")
            out = ", ".join(f"{k} {v:.3f}" for k, v in r.probabilities.items())
        elif r.anomaly_score is not None:
            import math

            if not math.isfinite(r.anomaly_score):
                raise CheckFailed(f"model {name} gave a non-finite anomaly score")
            out = f"anomaly score {r.anomaly_score:.4f}"
        else:
            raise CheckFailed(f"model {name} gave neither probabilities nor an anomaly score")
        return f"{info.task} v{info.version} on {r.device}: {out} ({info.source})"

    return check


def check_records(ctx: Context) -> str:
    from medview.records import load_records

    path = ctx.workdir / "selftest-bundle.json"
    path.write_text(json.dumps(fhir_bundle()), encoding="utf-8")
    rs = load_records(path)
    if rs.problems:
        raise CheckFailed(f"FHIR import reported problems: {rs.problems[0]}")
    c = rs.counts()
    if c["patients"] != 8 or c["observations"] != 101 or c["medications"] != 14:
        raise CheckFailed(f"FHIR import counts are wrong: {c}")
    ctx.records = rs
    return (
        f"generated FHIR bundle: {c['patients']} patients, {c['observations']} observations, "
        f"{c['conditions']} conditions, {c['medications']} medications"
    )


def _need_records(ctx: Context) -> Any:
    return _needed(ctx.records, "no records (the records check failed)")


def _check_forecast_values(res: Any, what: str) -> None:
    import numpy as np

    vals, lo, hi = (np.asarray(a, float) for a in (res.values, res.lower, res.upper))
    if not len(vals) or not np.isfinite(vals).all():
        raise CheckFailed(f"{what}: forecast values missing or not finite")
    if not (np.all(lo <= vals + 1e-6) and np.all(vals <= hi + 1e-6)):
        raise CheckFailed(f"{what}: forecast outside its own interval")


def check_forecast_glucose(ctx: Context) -> str:
    from medview.forecast.api import forecast_records

    rs = _need_records(ctx)
    res = forecast_records(rs, TARGET_PATIENT, GLUCOSE[0], 30)
    # the shown method is whichever won this patient's own backtest; the bundled LSTM must
    # have loaded and run in that backtest
    lstm = res.backtest.get("lstm")
    if not lstm:
        raise CheckFailed(f"the bundled LSTM did not run (backtest: {sorted(res.backtest)})")
    _check_forecast_values(res, f"glucose ({res.method})")
    if not all(40.0 <= float(v) <= 400.0 for v in res.values):
        raise CheckFailed(f"glucose forecast implausible: {list(res.values)}")
    return (
        f"{res.method} 30 min: {float(res.values[-1]):.0f} mg/dL "
        f"(80% {float(res.lower[-1]):.0f}-{float(res.upper[-1]):.0f}), LSTM ran in the backtest"
    )


def check_forecast_lab(ctx: Context) -> str:
    from medview.forecast.api import forecast_records

    rs = _need_records(ctx)
    res = forecast_records(rs, TARGET_PATIENT, HBA1C[0], 365 * 24 * 60)
    _check_forecast_values(res, "HbA1c")
    if not 4.0 <= float(res.values[-1]) <= 12.0:
        raise CheckFailed(f"HbA1c forecast implausible: {float(res.values[-1]):.2f}")
    return f"{res.method} 1 year: HbA1c {float(res.values[-1]):.2f} {res.unit}"


def check_suggest(ctx: Context) -> str:
    from medview.treatments import Recommender

    rs = _need_records(ctx)
    result = Recommender.from_records(rs).suggest(TARGET_PATIENT, k=3)
    if result.status != "ok" or not result.suggestions:
        raise CheckFailed(f"no suggestion ({result.status}): {result.message.strip()}")
    top = result.suggestions[0]
    if top.code != LISINOPRIL[0]:
        got = ", ".join(f"{s.display} ({s.code})" for s in result.suggestions)
        raise CheckFailed(f"expected lisinopril first (7 of 7 similar patients take it), got {got}")
    return f"top suggestion {top.display} (score {top.score:.2f})"
