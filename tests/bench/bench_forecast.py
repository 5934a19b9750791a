"""Benchmark: glucose forecasting on real patients (not run by pytest).

    python3 -m tests.bench.bench_forecast [--data ../shared/data/cgm_real] [--train]
        [--sim-days 2] [--epochs 4] [--repeat 5]

For each real set (Hall 2018, Dubosson 2018 / D1NAMO) it prints, side by side:

* the rolling-origin backtest of every method on every patient (the origins of
  ``medview forecast --evaluate``), pooled RMSE at 30 and 60 min, the ratio to
  persistence on the same origins, patients worse than persistence, Clarke A+B,
  and the leave-patients-out coverage of the 80 % interval of the selected method;
* with ``--train``: the candidates trained on real data (and ``--sim-days`` of
  simulated patients) by leave-patients-out cross-validation across BOTH sets
  (``medview.forecast.attention``: a self-attention GRU and a plain LSTM), their
  training time on this machine (1 torch thread), judged on the same origins; then
  the selection rules side by side (the old lowest-first-half-RMSE rule against the
  default ``ar+<network>`` with a margin), per set, on the second half of the origins,
  and ``selected`` in the tables is medview's rule with the ``--kind`` network;
* latency per patient: ``forecast_series`` (what the panel and ``medview forecast
  --cgm`` run: backtest, selection, interval) on a real patient, against the
  persistence forecast alone, and the AGP metrics (``medview cgm``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

SETS = ("Hall2018_processed.csv", "Dubosson2018_processed.csv")


def _load(path: Path) -> list[Any]:
    from medview.forecast.cgmdata import load_patients

    series, _, _ = load_patients(path)
    return series


def _backtests(series: list[Any], model: Any) -> tuple[list[Any], float]:
    from medview.forecast.evaluation import patient_backtest

    t0 = time.perf_counter()
    bts = [b for s in series if (b := patient_backtest(s, model)) is not None]
    return bts, time.perf_counter() - t0


def _table(name: str, bts: list[Any]) -> None:
    from medview.forecast.clarke import clarke_percentages
    from medview.forecast.evaluation import _coverage, calibrate

    print(f"\n== {name}: {len(bts)} patients ==")
    methods = sorted({m for b in bts for m in b.preds}, key=lambda m: (m != "selected", m))
    for minutes in (30, 60):
        h = minutes // 5 - 1
        print(f"{minutes} min   RMSE  vs persistence (same origins)  worse/patients  Clarke A+B")
        for m in methods:
            e, p, worse, n, ab_y, ab_p = [], [], 0, 0, [], []
            for b in bts:
                if m not in b.preds:
                    continue
                ok = ~np.isnan(b.preds[m][:, h])
                err = b.preds[m][ok, h] - b.y[ok, h]
                per = b.preds["persistence"][ok, h] - b.y[ok, h]
                e.append(err)
                p.append(per)
                ab_y.append(b.y[ok, h])
                ab_p.append(b.preds[m][ok, h])
                worse += int(np.sqrt(np.mean(err**2)) > np.sqrt(np.mean(per**2)))
                n += 1
            r = float(np.sqrt(np.mean(np.concatenate(e) ** 2)))
            rp = float(np.sqrt(np.mean(np.concatenate(p) ** 2)))
            z = clarke_percentages(np.concatenate(ab_y), np.concatenate(ab_p))
            print(
                f"  {m:12s} {r:6.2f}  x{r / rp:5.3f} ({rp:6.2f})          {worse:3d}/{n:<3d}"
                f"        {z['A'] + z['B']:6.2f}"
            )
        covs = []
        for b in bts:
            table = calibrate([o for o in bts if o is not b and o.group == b.group])
            c = _coverage(b, table, h)
            if c:
                covs.append(
                    (
                        c["coverage"],
                        c["mean_width_mgdl"],
                        int(np.sum(~np.isnan(b.preds["selected"][:, h]))),
                    )
                )
        n = sum(k for _, _, k in covs)
        print(
            f"  80% interval (selected, leave-patients-out, adaptive): coverage "
            f"{sum(c * k for c, _, k in covs) / n:.3f}, mean width "
            f"{sum(w * k for _, w, k in covs) / n:.1f} mg/dL, patients within 75-85 %: "
            f"{sum(0.75 <= c <= 0.85 for c, _, _ in covs)}/{len(covs)}"
        )


def _rules(sets: dict[str, Any], kind: str) -> None:
    """Selection rules judged on the second half of the origins (choice on the first)."""
    from medview.forecast.evaluation import CANDIDATES, pick

    print(f"\nselection rules with {kind} (RMSE, x persistence, patients worse):")
    for margin, floor in (
        (None, 0.0),
        (0.0, 0.0),
        (0.05, 0.0),
        (0.1, 0.0),
        (0.05, 0.05),
        (0.05, 0.1),
    ):
        cells = []
        for name, (_, bts) in sets.items():
            for minutes in (30, 60):
                h = minutes // 5 - 1
                e, p, worse = [], [], 0
                for b in bts:
                    half = len(b.y) // 2
                    ok = [m for m in b.preds if m in CANDIDATES or m.endswith(kind)]
                    if margin is None:
                        ok = [m for m in ok if m in CANDIDATES]
                    r = {
                        m: float(np.sqrt(np.mean((b.preds[m][:half, h] - b.y[:half, h]) ** 2)))
                        for m in ok
                    }
                    m = min(r, key=lambda k: r[k]) if margin is None else pick(r, margin, floor)
                    e.append(b.preds[m][half:, h] - b.y[half:, h])
                    p.append(b.preds["persistence"][half:, h] - b.y[half:, h])
                    worse += int(np.sqrt(np.mean(e[-1] ** 2)) > np.sqrt(np.mean(p[-1] ** 2)))
                r_ = float(np.sqrt(np.mean(np.concatenate(e) ** 2)))
                rp = float(np.sqrt(np.mean(np.concatenate(p) ** 2)))
                cells.append(f"{name[:4]} {minutes}: {r_:5.2f} x{r_ / rp:.3f} {worse}/{len(bts)}")
        label = (
            "old (lowest RMSE, no network)"
            if margin is None
            else f"default, margin {margin:g}, floor {floor:g}"
        )
        print(f"  {label:31s} " + " | ".join(cells))


def _simulated(days: float) -> list[np.ndarray]:
    from medview.forecast.simdata import patient_names, simulate_patient

    return [simulate_patient(n, days, 0).cgm for n in patient_names("train")]


def _latency(series: Any, repeat: int) -> None:
    from medview.forecast import baselines
    from medview.forecast.agp import agp_metrics
    from medview.forecast.api import forecast_series
    from medview.forecast.series import to_grid

    def timed(fn: Any) -> float:
        lat = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            lat.append(time.perf_counter() - t0)
        return statistics.median(lat)

    ours = timed(lambda: forecast_series(series, 30))
    base = timed(
        lambda: baselines.persistence(to_grid(series.seconds, series.values)[1][None, -36:], 6)
    )
    agp = timed(lambda: agp_metrics(series))
    print(
        f"\nlatency, patient {series.patient} ({len(series)} readings): forecast_series "
        f"(backtest + selection + interval) {1000 * ours:.0f} ms; persistence alone "
        f"{1000 * base:.2f} ms (x{ours / max(base, 1e-9):.0f}); AGP metrics {1000 * agp:.0f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[3] / "shared/data/cgm_real")
    )
    ap.add_argument(
        "--train", action="store_true", help="leave-patients-out training of the candidates"
    )
    ap.add_argument(
        "--sim-days", type=float, default=0.0, help="simulated days per training patient"
    )
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--kind", default="attn_gru", help="the network medview's selection uses")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from medview.forecast.lstm import load_model

    model = load_model()
    data = Path(args.data)
    sets = {}
    for name in SETS:
        t0 = time.perf_counter()
        series = _load(data / name)
        load_s = time.perf_counter() - t0
        bts, bt_s = _backtests(series, model)
        print(f"{name}: read {load_s:.1f} s, backtest of every method {bt_s:.1f} s")
        sets[name] = (series, bts)
    if args.train:
        from medview.forecast.attention import leave_patients_out

        extra = []
        if args.sim_days > 0:
            t0 = time.perf_counter()
            extra = _simulated(args.sim_days)
            print(
                f"simulated {len(extra)} patients x {args.sim_days:g} days: "
                f"{time.perf_counter() - t0:.0f} s"
            )
        allbts = [b for _, bts in sets.values() for b in bts]
        info = leave_patients_out(allbts, extra, epochs=args.epochs, log=print)
        print(
            f"training (3 folds, {args.epochs} epochs, 1 thread): "
            + ", ".join(f"{k} {v:.0f} s" for k, v in info["train_s"].items())
            + f"; windows per fold {info['windows']}"
        )
        from medview.forecast.attention import KINDS
        from medview.forecast.evaluation import add_real

        for b in allbts:  # medview's selection sees only the --kind network
            aside = {k: b.preds.pop(k) for k in list(b.preds) if k in KINDS and k != args.kind}
            add_real(b, args.kind, b.preds[args.kind])
            b.preds.update(aside)
        _rules(sets, args.kind)
    for name, (_, bts) in sets.items():
        _table(name, bts)
    series = max(sets["Dubosson2018_processed.csv"][0], key=len)
    _latency(series, args.repeat)


if __name__ == "__main__":
    main()
