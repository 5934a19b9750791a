"""AGP metrics (Battelino et al. 2019), MAGE (Fernandes et al. 2022) and ``medview cgm``."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from medview.cli import main
from medview.forecast.agp import agp_metrics, band_percentages, mage, mage_of_segment
from medview.forecast.series import Series


def _series(values, step_min=5.0, start=datetime(2024, 3, 1), pid="p1"):
    times = [start + timedelta(minutes=step_min * k) for k in range(len(values))]
    return Series(times, np.asarray(values, dtype=np.float64), patient=pid)


def test_agp_metrics_match_the_consensus_formulas():
    rng = np.random.default_rng(3)
    g = np.clip(140 + 60 * np.sin(np.arange(2016) / 40.0) + rng.normal(0, 25, 2016), 40, 400)
    g[500:520] = 50.0  # a very low spell
    m = agp_metrics(_series(g))
    mean = g.sum() / len(g)
    sd = np.sqrt(((g - mean) ** 2).sum() / (len(g) - 1))
    assert m.mean == pytest.approx(mean)
    assert m.gmi == pytest.approx(3.31 + 0.02392 * mean)
    assert m.cv == pytest.approx(100 * sd / mean)
    n = len(g)
    assert m.tbr_54 == pytest.approx(100 * np.count_nonzero(g < 54) / n)
    assert m.tbr_70 == pytest.approx(100 * np.count_nonzero((g >= 54) & (g < 70)) / n)
    assert m.tir_70_180 == pytest.approx(100 * np.count_nonzero((g >= 70) & (g <= 180)) / n)
    assert m.tar_180 == pytest.approx(100 * np.count_nonzero((g > 180) & (g <= 250)) / n)
    assert m.tar_250 == pytest.approx(100 * np.count_nonzero(g > 250) / n)
    assert m.tbr_54 > 0.9  # the low spell counts
    assert m.days == pytest.approx(2016 * 5 / 1440)
    assert m.active_percent == pytest.approx(100.0)


def test_band_edges_and_active_percent_with_missing_readings():
    b = band_percentages(np.array([53.9, 54, 69.9, 70, 180, 180.1, 250, 250.1]))
    assert b == {
        "tbr_54": 12.5,
        "tbr_70": 25.0,
        "tir_70_180": 25.0,
        "tar_180": 25.0,
        "tar_250": 12.5,
    }
    s = _series(np.full(288, 120.0))
    keep = [i for i in range(288) if i % 4]  # every 4th reading lost
    s = Series([s.times[i] for i in keep], s.values[keep], patient="p1")
    assert agp_metrics(s).active_percent == pytest.approx(100 * len(keep) / 288, abs=0.5)


def test_mage_of_a_known_wave():
    # a clean wave between 80 and 200 every 4 h: every excursion is 120 mg/dL
    t = np.arange(288 * 2)
    g = 140 + 60 * np.sign(np.sin(2 * np.pi * t / 48)) + 0.0
    g = np.convolve(g, np.ones(6) / 6, mode="same")[10:-10]
    assert mage_of_segment(g) == pytest.approx(120, rel=0.02)
    assert mage_of_segment(np.full(100, 120.0)) is None  # no excursion


def _manual_segments(shared: Path):
    folder = shared / "cgm_real"
    rows: dict[str, list[list[str]]] = {}
    for m in csv.DictReader((folder / "mage_manual_dev.csv").open()):
        if m["comment"] == "exclude":
            continue
        name = m["dataset_filename"]
        if name not in rows:
            with (folder / name).open() as fh:
                rows[name] = list(csv.reader(fh))[1:]
        part = rows[name][int(m["start"]) - 1 : int(m["end"])]
        good = [(datetime.fromisoformat(t), float(g)) for _, t, g in part if g != "NA"]
        yield float(m["manual"]), Series([t for t, _ in good], np.array([g for _, g in good]))


def test_mage_against_the_hand_computed_values(shared_data):
    pairs = [(manual, mage(s)) for manual, s in _manual_segments(shared_data)]
    assert len(pairs) == 18
    close = [abs(v - m) <= 0.1 * m for m, v in pairs]
    assert sum(close) / len(close) >= 0.8, pairs


def test_cgm_command_json_every_patient_and_one(shared_data, capsys, tmp_path):
    f = shared_data / "cgm_real" / "Dubosson2018_processed.csv"
    assert main(["cgm", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in out] == [f"00{k}" for k in range(1, 10)]
    keys = {"id", "days", "active_percent", "mean", "gmi", "cv", "tir_70_180", "tbr_54"}
    keys |= {"tbr_70", "tar_180", "tar_250", "mage"}
    assert all(set(r) == keys for r in out)
    one = out[0]
    # the same figures from the raw rows of patient 001
    with f.open() as fh:
        g = np.array([float(r[2]) for r in list(csv.reader(fh))[1:] if r[0] == "001"])
    assert one["mean"] == pytest.approx(g.mean(), abs=0.01)
    assert one["gmi"] == pytest.approx(3.31 + 0.02392 * g.mean(), abs=0.01)
    assert one["cv"] == pytest.approx(100 * g.std(ddof=1) / g.mean(), abs=0.01)
    png = tmp_path / "agp.png"
    assert main(["cgm", str(f), "--patient", "003", "--json", "--out", str(png)]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "003"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = tmp_path / "agp.pdf"
    assert main(["cgm", str(f), "--patient", "003", "--out", str(pdf)]) == 0
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_cgm_command_bad_input(tmp_path, capsys, shared_data):
    f = shared_data / "cgm_real" / "Dubosson2018_processed.csv"
    assert main(["cgm", str(f), "--patient", "nobody"]) == 2
    err = capsys.readouterr().err
    assert "no patient 'nobody'" in err and err.count("\n") == 1
    assert main(["cgm", str(tmp_path / "missing.csv")]) == 2
    assert main(["cgm", str(f), "--out", str(tmp_path / "x.gif")]) == 2
    short = tmp_path / "short.csv"
    short.write_text("time,glucose\n2024-01-01 00:00,100\n2024-01-01 00:05,101\n")
    assert main(["cgm", str(short)]) == 2
    assert "needs at least 12" in capsys.readouterr().err
