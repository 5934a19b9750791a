"""Grid search of the blend settings on ONE records set (the tuning set).

Reproduces how the defaults of :class:`~medview.treatments.recommender.Params` were
chosen: ``python3 -m medview.treatments.tune --records ../shared/data/records/synthea_csv_ma27``.
Prints the best settings by hit-rate@k (then NDCG@k) on that set, plus ablations
(each component alone). Report the chosen settings on a *different* set with
``medview suggest --evaluate``.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import asdict, replace
from typing import Any

from medview.tasks import TaskState, ensure_state
from medview.treatments.evaluate import evaluate_folds, prepare_folds
from medview.treatments.recommender import Params

GRID = {
    "w_user": (0.0, 0.25, 0.5, 1.0),
    "w_item": (0.0, 0.25, 0.5),
    "reason_boost": (0.0, 1.0, 2.0, 4.0),
    "lift": (0.0, 0.5, 1.0),
    "neighbours": (5, 10),
    "resolved_weight": (0.25, 0.5, 1.0),
}

ABLATIONS = {
    "condition only": Params(w_user=0.0, w_item=0.0),
    "similar patients only": Params(w_condition=0.0, w_item=0.0),
    "co-occurrence only": Params(w_condition=0.0, w_user=0.0),
}


def tune(records_path: str, k: int = 5, state: TaskState | None = None) -> dict:
    """Evaluate every parameter combination of :data:`GRID`; the best, defaults and ablations."""
    from medview.records import load_records

    state = ensure_state(state)
    state.check()
    folds = prepare_folds(load_records(records_path, state), state=state)
    base = Params()
    scored = []
    keys = list(GRID)
    combos = list(itertools.product(*(GRID[key] for key in keys)))
    for n, values in enumerate(combos):
        state.progress(n / len(combos), f"parameter set {n + 1}/{len(combos)}")
        overrides: dict[str, Any] = dict(zip(keys, values, strict=True))
        prm = replace(base, **overrides)
        d = evaluate_folds(folds, k, prm).as_dict()
        scored.append((d["method"]["hit_rate"], d["method"]["ndcg"], prm, d))
    scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
    best = scored[0]
    out = {
        "records": records_path,
        "configs": len(scored),
        "best": {"params": asdict(best[2]), "result": best[3]},
        "defaults": evaluate_folds(folds, k, base).as_dict(),
        "ablations": {n: evaluate_folds(folds, k, p).as_dict() for n, p in ABLATIONS.items()},
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", required=True)
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args(argv)
    print(json.dumps(tune(args.records, args.k), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
