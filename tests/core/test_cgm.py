"""CGM CSV import: header detection, unit conversion, bad rows."""

from __future__ import annotations

from datetime import datetime

import pytest

from medview.errors import ReadError
from medview.records.cgm import CGM_LOINC, MMOL_TO_MGDL, convert_glucose, load_cgm_csv


def write(tmp_path, text: str, name: str = "cgm.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_headerless_mgdl(tmp_path):
    path = write(
        tmp_path, "2024-03-01T08:00:00,120\n2024-03-01 08:05,125\n2024-03-01T10:10:00+02:00,131.5\n"
    )
    rs = load_cgm_csv(path)
    assert [o.value for o in rs.observations] == [120.0, 125.0, 131.5]
    assert {o.code for o in rs.observations} == {CGM_LOINC}
    assert {o.unit for o in rs.observations} == {"mg/dL"}
    assert rs.observations[1].time == datetime(2024, 3, 1, 8, 5)
    assert rs.observations[2].time == datetime(2024, 3, 1, 8, 10)  # offset: naive UTC
    assert list(rs.patients) == ["cgm"]
    # an offset on one row and none on the others: said, once (issue 15 item 6)
    assert [p.reason.split(":")[0] for p in rs.problems] == ["time zone"]


def test_mmol_unit_column_converted(tmp_path):
    path = write(
        tmp_path,
        "Timestamp;Glucose;Unit\n01.03.2024 08:00;5,5;mmol/L\n01.03.2024 08:05;6.0;mmol/l\n01.03.2024 08:10;110;mg/dL\n",
    )
    rs = load_cgm_csv(path, patient_id="p1")
    values = [o.value for o in rs.observations]
    assert values[0] == pytest.approx(5.5 * MMOL_TO_MGDL, abs=0.01)
    assert values[0] == pytest.approx(99.09, abs=0.01)
    assert values[1] == pytest.approx(108.1, abs=0.01)
    assert values[2] == 110.0
    assert rs.observations[0].original_value == 5.5
    assert rs.observations[0].original_unit == "mmol/L"
    assert rs.observations[0].patient_id == "p1"


def test_unit_in_header_name(tmp_path):
    path = write(
        tmp_path,
        "Device Timestamp,Historic Glucose mmol/L\n2024-03-01 08:00,7.0\n2024-03-01 08:15,8.0\n",
    )
    rs = load_cgm_csv(path)
    assert [round(o.value, 2) for o in rs.observations] == [126.11, 144.13]


def test_bad_rows_reported_with_line_and_skipped(tmp_path):
    text = (
        "time,value,unit\n"
        "2024-03-01 08:00,120,mg/dL\n"
        "yesterday,130,mg/dL\n"  # line 3
        "2024-03-01 08:10,Low,mg/dL\n"  # line 4
        "2024-03-01 08:15,140,mg\n"  # line 5: unit cannot be converted
        "2024-03-01 08:20,5000,mg/dL\n"  # line 6: implausible
        "2024-03-01 08:00,121,mg/dL\n"  # line 7: duplicate time
        "2024-03-01 08:25\n"  # line 8: missing value
        "\n"
        "2024-03-01 08:30,150,mg/dL\n"
    )
    path = write(tmp_path, text)
    rs = load_cgm_csv(path)
    assert [o.value for o in rs.observations] == [120.0, 140.0, 150.0]
    flagged = rs.observations[1]
    assert flagged.unit == "mg" and flagged.unit_flag and "cannot be converted" in flagged.unit_flag
    assert [o.unit_flag for o in rs.observations[::2]] == ["", ""]
    where = [p.source for p in rs.problems]
    assert where == [f"{path}:{n}" for n in (3, 4, 5, 6, 7, 8)]
    reasons = " | ".join(p.reason for p in rs.problems)
    assert "timestamp" in reasons and "'Low'" in reasons and "'mg'" in reasons
    assert "flagged" in reasons
    # forecasting leaves the flagged reading out and says so
    from medview.forecast.series import series_from_observations

    series = series_from_observations(rs.observations, CGM_LOINC)
    assert series.values.tolist() == [120.0, 150.0]
    assert any("cannot be converted" in p for p in series.problems)
    assert "implausible" in reasons and "duplicate" in reasons


def test_no_unit_and_mmol_looking_values_refused(tmp_path):
    path = write(tmp_path, "2024-03-01 08:00,5.5\n2024-03-01 08:05,5.9\n2024-03-01 08:10,6.2\n")
    with pytest.raises(ReadError, match="look like mmol/L"):
        load_cgm_csv(path)
    rs = load_cgm_csv(path, default_unit="mmol/L")
    assert rs.observations[0].value == pytest.approx(99.09, abs=0.01)


def test_empty_and_unusable_files(tmp_path):
    with pytest.raises(ReadError, match="empty"):
        load_cgm_csv(write(tmp_path, "\n\n", "empty.csv"))
    with pytest.raises(ReadError, match="no usable"):
        load_cgm_csv(write(tmp_path, "time,value\nfoo,bar\n", "bad.csv"))
    with pytest.raises(ReadError, match="cannot read"):
        load_cgm_csv(tmp_path / "missing.csv")


def test_convert_glucose():
    assert convert_glucose(10.0, "mmol/L") == (pytest.approx(180.16), "mmol/L")
    assert convert_glucose(180.0, "mg/dl") == (180.0, "mg/dL")
    assert convert_glucose(1.0, "g/L") is None
