"""Adult reference ranges shown behind forecast plots (orientation only, not diagnostic)."""

from __future__ import annotations

# LOINC -> (low, high, unit, label)
REFERENCE_RANGES: dict[str, tuple[float, float, str, str]] = {
    "99504-3": (70.0, 180.0, "mg/dL", "CGM target range 70-180 mg/dL"),
    "2339-0": (70.0, 99.0, "mg/dL", "fasting glucose 70-99 mg/dL"),
    "2345-7": (70.0, 99.0, "mg/dL", "fasting glucose 70-99 mg/dL"),
    "4548-4": (4.0, 5.7, "%", "HbA1c below 5.7 %"),
    "8480-6": (90.0, 120.0, "mm[Hg]", "systolic 90-120 mmHg"),
    "8462-4": (60.0, 80.0, "mm[Hg]", "diastolic 60-80 mmHg"),
    "39156-5": (18.5, 25.0, "kg/m2", "BMI 18.5-25 kg/m2"),
    "2160-0": (0.6, 1.3, "mg/dL", "creatinine 0.6-1.3 mg/dL"),
    "38483-4": (0.6, 1.3, "mg/dL", "creatinine 0.6-1.3 mg/dL"),
    "2093-3": (125.0, 200.0, "mg/dL", "total cholesterol below 200 mg/dL"),
    "18262-6": (0.0, 100.0, "mg/dL", "LDL below 100 mg/dL"),
    "2085-9": (40.0, 100.0, "mg/dL", "HDL at least 40 mg/dL"),
    "2571-8": (0.0, 150.0, "mg/dL", "triglycerides below 150 mg/dL"),
    "8867-4": (60.0, 100.0, "/min", "heart rate 60-100 /min"),
    "33914-3": (60.0, 200.0, "mL/min/{1.73_m2}", "eGFR at least 60"),
}


def reference_range(code: str, unit: str = "") -> tuple[float, float, str] | None:
    """``(low, high, label)`` for ``code`` when its unit matches (or is unknown)."""
    ref = REFERENCE_RANGES.get(code)
    if ref is None:
        return None
    low, high, ref_unit, label = ref
    norm = unit.replace(" ", "").lower()
    if norm and norm not in (ref_unit.lower(), ref_unit.lower().replace("[hg]", "hg")):
        return None
    return low, high, label
