"""Real CGM input for forecasting and the AGP: multi-patient files and bad input (issue 15)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest

from medview.cli import main
from medview.errors import ReadError
from medview.records.cgm import load_cgm_csv


def _write(tmp_path, name, header, rows):
    p = tmp_path / name
    p.write_text("\n".join([header, *rows]) + "\n")
    return p


def _wave(n, step_min=5.0, start=datetime(2024, 3, 1), base=140.0):
    t = [start + timedelta(minutes=step_min * k) for k in range(n)]
    v = base + 40 * np.sin(np.arange(n) * step_min / 90.0)
    return t, v


def test_mixed_units_without_a_unit_column_refused(tmp_path):
    t, v = _wave(300)
    rows = [f"{a:%Y-%m-%d %H:%M},{x:.0f}" for a, x in zip(t, v, strict=True)]
    rows[100:110] = [
        f"{a:%Y-%m-%d %H:%M},{x / 18:.1f}" for a, x in zip(t[100:110], v[100:110], strict=True)
    ]
    with pytest.raises(ReadError, match="mix"):
        load_cgm_csv(_write(tmp_path, "mixed.csv", "time,glucose", rows))


def test_mixed_time_zones_and_unsorted_rows_reported(tmp_path):
    t, v = _wave(100)
    rows = [f"{a:%Y-%m-%dT%H:%M}+01:00,{x:.0f}" for a, x in zip(t, v, strict=True)]
    rows[50] = f"{t[50]:%Y-%m-%dT%H:%M},{v[50]:.0f}"  # no offset
    rs = load_cgm_csv(_write(tmp_path, "tz.csv", "time,glucose", rows))
    assert any("time zone" in p.reason for p in rs.problems)
    rows = [f"{a:%Y-%m-%d %H:%M},{x:.0f}" for a, x in zip(t, v, strict=True)]
    rows[10], rows[20] = rows[20], rows[10]
    rs = load_cgm_csv(_write(tmp_path, "unsorted.csv", "time,glucose", rows))
    assert any("not in time order" in p.reason for p in rs.problems)
    times = [o.time for o in rs.observations]
    assert times == sorted(times) and len(times) == 100


def test_daylight_saving_fall_back_reported(tmp_path):
    # local clock: 01:00..01:55 then back to 01:00 (autumn change), written without zone
    t = [datetime(2024, 10, 27, 0, 0) + timedelta(minutes=5 * k) for k in range(24)]
    t += [datetime(2024, 10, 27, 1, 0) + timedelta(minutes=5 * k) for k in range(60)]
    rows = [f"{a:%Y-%m-%d %H:%M},{120 + k % 7}" for k, a in enumerate(t)]
    rs = load_cgm_csv(_write(tmp_path, "dst.csv", "time,glucose", rows))
    assert any("daylight" in p.reason for p in rs.problems)


def _cgm_file(tmp_path, name, step_min, hours, pid=None):
    n = int(hours * 60 / step_min)
    t, v = _wave(n, step_min)
    head = "id,time,gl" if pid else "time,glucose"
    rows = [
        (f'"{pid}",' if pid else "") + f"{a:%Y-%m-%d %H:%M:%S},{x:.0f}"
        for a, x in zip(t, v, strict=True)
    ]
    return _write(tmp_path, name, head, rows)


@pytest.mark.parametrize(
    ("step", "hours", "rc", "said"),
    [(15, 48, 2, "3- to 5-minute CGM"), (5, 2, 2, "needs at least 4 h"), (3, 24, 0, "")],
)
def test_device_sampling_and_short_records(tmp_path, capsys, step, hours, rc, said):
    f = _cgm_file(tmp_path, f"d{step}.csv", step, hours)
    assert main(["forecast", "--cgm", str(f), "--horizon", "30", "--json"]) == rc
    err = capsys.readouterr().err
    if rc:
        assert said in err and err.count("\n") == 1 and "Traceback" not in err
    # the AGP works for every device that gives an hour of data
    assert main(["cgm", str(f), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["active_percent"] == pytest.approx(100, abs=1)


def test_forecast_picks_a_patient_of_a_multi_patient_file(tmp_path, capsys):
    a = _cgm_file(tmp_path, "a.csv", 5, 24, pid="A").read_text().splitlines()
    b = _cgm_file(tmp_path, "b.csv", 5, 2, pid="B").read_text().splitlines()[1:]
    f = _write(tmp_path, "ab.csv", a[0], a[1:] + b)
    assert main(["forecast", "--cgm", str(f), "--patient", "A", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["patient"] == "A"
    assert main(["forecast", "--cgm", str(f), "--json"]) == 0  # the first, and it is said
    out = capsys.readouterr()
    assert json.loads(out.out)["patient"] == "A" and "2 patients; forecasting the first" in out.err
    assert main(["forecast", "--cgm", str(f), "--patient", "B"]) == 2
    assert "patient B: 1.9 h of CGM" in capsys.readouterr().err
    assert main(["forecast", "--cgm", str(f), "--patient", "C"]) == 2
    assert "no patient 'C'" in capsys.readouterr().err
    # --evaluate without --patient: A evaluated, B skipped with the reason
    assert main(["forecast", "--cgm", str(f), "--evaluate", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data["patients"]) == ["A"] and "B" in data["skipped"]


def test_evaluate_every_real_type1_patient(shared_data, capsys):
    """Issue 15 targets on D1NAMO (type 1). The bundled real-data network was trained on
    these patients, so it is left out of their backtests (card fingerprints); the
    simulator LSTM and the patient's own AR never saw them."""
    f = shared_data / "cgm_real" / "Dubosson2018_processed.csv"
    assert main(["forecast", "--cgm", str(f), "--evaluate", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(data["patients"]) == [f"00{k}" for k in range(1, 10)]
    pooled = data["pooled"]["backtest"]
    for h in ("30", "60"):
        sel = pooled[h]["selected"]
        assert sel["rmse"] < sel["persistence_rmse"]  # on the same origins
    sel30 = pooled["30"]["selected"]
    assert sel30["rmse"] <= 0.88 * sel30["persistence_rmse"]  # >= 12 % below persistence
    assert sel30["patients_worse_than_persistence"] <= 1
    zones = data["pooled"]["clarke"]["30"]["selected"]
    assert zones["A"] + zones["B"] >= 99.0
    cov = data["pooled"]["interval80"]
    assert all(0.75 <= cov[h]["coverage"] <= 0.85 for h in ("30", "60"))
    # every baseline stays in the output, per patient, with its Clarke zones and lag
    one = data["patients"]["001"]
    assert {"persistence", "linear", "ar", "lstm", "selected"} <= set(one["backtest"]["30"])
    assert one["backtest"]["30"]["persistence"]["lag_min"] == 30
    assert "ar+attn_gru" not in one["backtest"]["30"]
    assert any("attn_gru left out" in n for n in one["notes"])
    assert data["file_problems"] == []  # D1NAMO has no bad rows
    hall = shared_data / "cgm_real" / "Hall2018_processed.csv"
    assert main(["forecast", "--cgm", str(hall), "--patient", "1636-69-001", "--json"]) == 0
    err = capsys.readouterr().err
    assert "Hall2018_processed.csv:28951: non-numeric glucose value 'NA'" in err  # sensor error
