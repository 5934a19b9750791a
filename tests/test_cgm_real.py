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
    rows[100:110] = [f"{a:%Y-%m-%d %H:%M},{x / 18:.1f}" for a, x in zip(t[100:110], v[100:110])]
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
