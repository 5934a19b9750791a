"""Reproducible simulated CGM from the UVA/Padova T1D simulator (``simglucose``).

Training data for the global glucose LSTM. Each virtual patient of simglucose
(adolescent, adult, child #001-#010; Man et al. 2014, the UVA/Padova simulator,
Python implementation by Jinyu Xie) is simulated for a number of days with:

* the simglucose random meal scenario (breakfast, lunch, dinner and snacks, seeded),
* a basal-bolus therapy like simglucose's ``BBController`` (basal from the steady
  state, meal bolus = carbs / CR + correction above 150 mg/dL), with seeded
  patient behaviour: the bolus dose varies +-30 %, 8 % of meal boluses are
  forgotten and some are given late (up to 30 min),
* the simglucose "GuardianRT" CGM sensor model (5-minute samples, Johnson noise).

Everything is seeded, so the same arguments give the same series. Generated
series are cached as ``.npz`` under :func:`cache_dir` (outside the repository).

simglucose 0.2.11 imports ``gym`` and ``pkg_resources`` at import time, both of
which are broken with current setuptools; :func:`import_simglucose` installs
tiny stand-ins for exactly the two functions it uses (``register`` and
``resource_filename``) when the real ones are missing.
"""

from __future__ import annotations

import hashlib
import os
import sys
import types
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from medview.tasks import TaskState, ensure_state

GROUPS = ("adolescent", "adult", "child")
TRAIN_NUMBERS = tuple(range(1, 9))
VALID_NUMBERS = (9, 10)
SAMPLE_MIN = 5  # CGM sample interval (GuardianRT model)
SIM_VERSION = "sim-v1"  # bump when the simulation recipe changes (cache key)


def patient_names(split: str) -> list[str]:
    """Virtual patient names for ``split`` = "train" (#001-#008) or "valid" (#009, #010)."""
    numbers = TRAIN_NUMBERS if split == "train" else VALID_NUMBERS
    return [f"{g}#{n:03d}" for g in GROUPS for n in numbers]


def import_simglucose() -> types.SimpleNamespace:
    """Import the simglucose pieces we need, working around its broken imports."""
    try:
        import pkg_resources  # noqa: F401
    except Exception:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, resource: str) -> str:
            from importlib.resources import files

            return str(files(package).joinpath(resource))

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    # simglucose/__init__ only registers a gym environment we never use: give it a
    # stand-in ``register`` instead of importing the (old, heavy) gym package
    added: list[str] = []
    if "simglucose" not in sys.modules and "gym" not in sys.modules:
        for name in ("gym", "gym.envs", "gym.envs.registration"):
            mod = types.ModuleType(name)
            mod.__path__ = []
            sys.modules[name] = mod
            added.append(name)
        sys.modules["gym.envs.registration"].register = lambda *a, **k: None  # type: ignore[attr-defined]
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        from simglucose.actuator.pump import InsulinPump
        from simglucose.patient.t1dpatient import Action, T1DPatient
        from simglucose.sensor.cgm import CGMSensor
        from simglucose.simulation.scenario_gen import RandomScenario
    finally:
        for name in added:  # do not leave the fake gym around for anyone else
            sys.modules.pop(name, None)
    return types.SimpleNamespace(
        InsulinPump=InsulinPump,
        T1DPatient=T1DPatient,
        Action=Action,
        CGMSensor=CGMSensor,
        RandomScenario=RandomScenario,
    )


class _Params(types.SimpleNamespace):
    """Patient parameters as plain attributes (pandas attribute access is slow in the ODE)."""


@dataclass
class SimSeries:
    """One simulated patient: CGM every 5 minutes from ``start``."""

    name: str
    seed: int
    start: datetime
    cgm: np.ndarray  # float32 mg/dL, CGM sensor reading
    bg: np.ndarray  # float32 mg/dL, true subcutaneous glucose (not used for training)

    def times(self) -> list[datetime]:
        return [self.start + timedelta(minutes=SAMPLE_MIN * i) for i in range(len(self.cgm))]


def cache_dir() -> Path:
    """Where generated simulations are cached (``MEDVIEW_SIM_CACHE`` overrides)."""
    override = os.environ.get("MEDVIEW_SIM_CACHE")
    if override:
        path = Path(override)
    else:
        from medview.paths import user_data_dir

        path = user_data_dir() / "simglucose_cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _param_file(name: str) -> str:
    from importlib.resources import files

    return str(files("simglucose").joinpath("params").joinpath(name))


def _seed_for(name: str, seed: int) -> int:
    digest = hashlib.sha256(f"{SIM_VERSION}:{name}:{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % (2**31 - 1)


def simulate_patient(
    name: str,
    days: float,
    seed: int = 0,
    start: datetime = datetime(2024, 1, 1, 0, 0),
    state: TaskState | None = None,
    use_cache: bool = True,
) -> SimSeries:
    """Simulate ``days`` of CGM for virtual patient ``name`` (e.g. ``"adult#009"``)."""
    state = ensure_state(state)
    key = f"{SIM_VERSION}_{name.replace('#', '')}_{seed}_{days:g}_{start:%Y%m%d%H%M}.npz"
    path = cache_dir() / key if use_cache else None
    if path is not None and path.exists():
        with np.load(path) as z:
            return SimSeries(name, seed, start, z["cgm"], z["bg"])

    sg = import_simglucose()
    import pandas as pd

    rng = np.random.default_rng(_seed_for(name, seed))
    sim_seed = int(rng.integers(0, 2**31 - 1))
    table = pd.read_csv(_param_file("vpatient_params.csv"))
    row = table.loc[table.Name == name].squeeze()
    if row.empty:
        raise ValueError(f"unknown simglucose patient {name!r}")
    quest = pd.read_csv(_param_file("Quest.csv"))
    q = quest.loc[quest.Name == name].squeeze()
    params = _Params(**{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    init = np.asarray(row.iloc[2:15].values, dtype=float)
    patient = sg.T1DPatient(params, init_state=init.copy(), random_init_bg=True, seed=sim_seed)
    sensor = sg.CGMSensor.withName("GuardianRT", seed=sim_seed + 1)
    pump = sg.InsulinPump.withName("Insulet")
    scenario = sg.RandomScenario(start_time=start, seed=sim_seed + 2)
    basal = params.u2ss * params.BW / 6000.0  # U/min
    cr, cf, target = float(q.CR), float(q.CF), 140.0

    n_min = int(round(days * 24 * 60))
    cgm: list[float] = []
    bg: list[float] = []
    bolus_at: dict[int, float] = {}  # minute -> bolus rate (U/min)
    last_cgm = float(params.Gb) if hasattr(params, "Gb") else 140.0
    for minute in range(n_min + 1):
        if minute % SAMPLE_MIN == 0:
            reading = float(sensor.measure(patient))
            cgm.append(reading)
            bg.append(float(patient.observation.Gsub))
            last_cgm = reading
            if minute % (SAMPLE_MIN * 288) == 0:
                state.progress(minute / max(n_min, 1), f"simulating {name}")
        if minute == n_min:
            break
        now = start + timedelta(minutes=minute)
        meal = float(scenario.get_action(now).meal)
        if meal > 0 and rng.random() > 0.08:  # 8 % of meal boluses forgotten
            dose = meal / cr + (last_cgm > 150) * (last_cgm - target) / cf
            dose = max(dose, 0.0) * float(rng.uniform(0.7, 1.3))
            delay = int(rng.choice([0, 0, 0, 0, 10, 20, 30]))
            for k in range(SAMPLE_MIN):  # delivered over 5 minutes
                due = minute + delay + k
                bolus_at[due] = bolus_at.get(due, 0.0) + dose / SAMPLE_MIN
        rate = bolus_at.pop(minute, 0.0)
        insulin = pump.basal(basal) + pump.bolus(rate)
        patient.step(sg.Action(insulin=insulin, CHO=meal))
    series = SimSeries(
        name, seed, start, np.asarray(cgm, dtype=np.float32), np.asarray(bg, dtype=np.float32)
    )
    if path is not None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, cgm=series.cgm, bg=series.bg)
        os.replace(tmp, path)
    return series
