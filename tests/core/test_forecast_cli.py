"""``medview forecast``: JSON shapes, --evaluate, records, refusals."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import pytest

from medview.cli import main
from medview.commands.forecast import DISCLAIMER

FORECAST_KEYS = {"patient", "code", "unit", "method", "history_points", "forecast", "backtest"}


@pytest.fixture()
def cgm_csv(tmp_path):
    rng = np.random.default_rng(7)
    n = 288 * 2
    t0 = datetime(2024, 5, 1)
    v = 7.8 + 2.2 * np.sin(np.arange(n) / 25.0) + rng.normal(0, 0.2, n)  # mmol/L
    lines = ["Timestamp,Glucose,Unit"]
    lines += [
        f"{(t0 + timedelta(minutes=5 * k)).isoformat()},{x:.2f},mmol/L" for k, x in enumerate(v)
    ]
    lines.insert(100, "2024-05-01T08:17:00,HIGH,mmol/L")  # one bad row
    path = tmp_path / "sensor.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cgm_json_shape(cgm_csv, capsys):
    assert main(["forecast", "--cgm", str(cgm_csv), "--horizon", "30", "--json"]) == 0
    out = capsys.readouterr()
    data = json.loads(out.out)
    assert FORECAST_KEYS <= set(data)
    assert data["patient"] == "sensor" and data["code"] == "99504-3" and data["unit"] == "mg/dL"
    # the method shown is the one that won the patient's own backtest (issue 15 item 2)
    assert data["method"] == data["winner"] and data["history_points"] == 576
    assert len(data["forecast"]) == 6
    first = data["forecast"][0]
    assert set(first) == {"time", "value", "lower", "upper"}
    assert first["time"] == "2024-05-03T00:00:00"  # 5 min after the last reading
    assert first["lower"] <= first["value"] <= first["upper"]
    assert 60 < first["value"] < 250  # mg/dL, converted from mmol/L
    assert set(data["backtest"]) == {"lstm", "persistence", "linear", "ar", "ar+lstm"} | {
        "attn_gru",
        "ar+attn_gru",
    }  # + the network trained on real CGM and its mean with the AR
    assert all(set(v) == {"rmse", "mae"} for v in data["backtest"].values())
    assert data["winner"] in data["backtest"]
    assert "sensor.csv:101" in out.err  # the bad row, with its line
    assert data["disclaimer"] == DISCLAIMER and "not for diagnostic use" in DISCLAIMER


def test_disclaimer_in_text_and_evaluate(cgm_csv, capsys):
    """Issue 10 item 6: every forecast output carries the disclaimer, as AI and suggestions do."""
    assert main(["forecast", "--cgm", str(cgm_csv), "--horizon", "30"]) == 0
    text = capsys.readouterr().out
    assert text.strip().splitlines()[-1] == f"NOTE: {DISCLAIMER}"
    assert "method: " in text and "80% prediction interval" in text


def test_cgm_evaluate(cgm_csv, capsys):
    assert main(["forecast", "--cgm", str(cgm_csv), "--evaluate", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    one = data["patients"]["sensor"]
    assert set(one["backtest"]) == {"30", "60"} == set(one["clarke"])
    for h, row in one["backtest"].items():
        assert {"lstm", "persistence", "linear", "ar", "selected", "ar+attn_gru"} <= set(row)
        assert row["lstm"]["n"] == one["origins"] > 100
        zones = one["clarke"][h]["lstm"]
        assert set(zones) == set("ABCDE") and sum(zones.values()) == pytest.approx(100, abs=0.01)
    assert set(data["pooled"]) == {"backtest", "clarke", "interval80"}
    assert main(["forecast", "--cgm", str(cgm_csv), "--evaluate"]) == 0
    text = capsys.readouterr().out
    assert "30 min ahead" in text and "60 min ahead" in text and "Clarke" in text
    assert data["disclaimer"] == DISCLAIMER and f"NOTE: {DISCLAIMER}" in text


def test_cgm_bad_inputs(tmp_path, capsys):
    assert main(["forecast", "--cgm", str(tmp_path / "none.csv")]) == 2
    assert "none.csv" in capsys.readouterr().err
    short = tmp_path / "short.csv"
    short.write_text("t,v\n2024-01-01 00:00,100\n2024-01-01 00:05,105\n")
    assert main(["forecast", "--cgm", str(short), "--json"]) == 2
    assert "needs at least 4 h" in capsys.readouterr().err
    assert main(["forecast", "--cgm", str(short), "--horizon", "soon"]) == 2


def test_records_forecast(records_dir, capsys):
    from medview.records import load_records

    folder = records_dir / "synthea_csv_ma27"
    rs = load_records(folder)
    counts = Counter(
        (o.patient_id, o.code)
        for o in rs.observations
        if o.value is not None and o.code == "8480-6"
    )
    (pid, code), n = counts.most_common(1)[0]
    assert n >= 3
    rc = main(
        [
            "forecast",
            "--records",
            str(folder),
            "--patient",
            pid,
            "--code",
            code,
            "--horizon",
            "365d",
            "--json",
        ]
    )
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert FORECAST_KEYS <= set(data)
    assert data["patient"] == pid and data["code"] == "8480-6" and data["method"] == "gp"
    assert data["history_points"] == n
    assert len(data["forecast"]) == 12
    assert data["disclaimer"] == DISCLAIMER
    if n >= 4:
        assert set(data["backtest"]) == {"gp", "persistence", "mean", "linear"}
    # a code with fewer than 3 values for that patient is refused with the reason
    few = [
        c
        for (p, c), k in Counter(
            (o.patient_id, o.code) for o in rs.observations if o.value is not None
        ).items()
        if p == pid and k < 3
    ]
    if few:
        assert main(["forecast", "--records", str(folder), "--patient", pid, "--code", few[0]]) == 2
        assert "at least 3" in capsys.readouterr().err


def test_records_need_patient_and_code(tmp_path, capsys):
    assert main(["forecast", "--records", str(tmp_path)]) == 2
    assert "--patient" in capsys.readouterr().err


def test_records_accepts_a_cgm_csv(cgm_csv, capsys):
    rc = main(
        [
            "forecast",
            "--records",
            str(cgm_csv),
            "--patient",
            "sensor",
            "--code",
            "99504-3",
            "--json",
        ]
    )
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == data["winner"] in {"lstm", "ar", "linear", "persistence"}
    assert data["history_points"] == 576 and len(data["forecast"]) == 12
