"""Canonical units for observations keyed by LOINC code, and the conversions to them.

Each LOINC code we know gets one canonical unit (glucose mg/dL, HbA1c %, blood
pressure mmHg, BMI kg/m2, ...). A value in another unit is converted when the
conversion is known; otherwise the value is kept as given and the observation is
flagged (``unit_flag``) - never guessed. Codes not in the table keep their unit
(with UCUM spellings tidied, e.g. ``mm[Hg]`` -> ``mmHg``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# mg/dL per mmol/L for common analytes (molar masses)
GLUCOSE_MG_PER_MMOL = 18.016  # 180.16 g/mol
CHOLESTEROL_MG_PER_MMOL = 38.67  # 386.65 g/mol
TRIGLYCERIDE_MG_PER_MMOL = 88.57  # triolein, 885.7 g/mol
CREATININE_UMOL_PER_MG = 88.42  # umol/L per mg/dL
UREA_N_MG_PER_MMOL = 2.801  # urea nitrogen, 28.01 g/mol N2
CALCIUM_MG_PER_MMOL = 4.008

# spellings -> one display spelling (UCUM codes and common free text)
_SYNONYMS: dict[str, str] = {
    "mm[hg]": "mmHg",
    "mmhg": "mmHg",
    "mm hg": "mmHg",
    "kpa": "kPa",
    "mg/dl": "mg/dL",
    "mmol/l": "mmol/L",
    "umol/l": "umol/L",
    "µmol/l": "umol/L",
    "μmol/l": "umol/L",
    "g/dl": "g/dL",
    "g/l": "g/L",
    "mg/l": "mg/L",
    "%": "%",
    "percent": "%",
    "mmol/mol": "mmol/mol",
    "kg/m2": "kg/m2",
    "kg/m^2": "kg/m2",
    "kg/(m2)": "kg/m2",
    "kg/m²": "kg/m2",
    "kg": "kg",
    "g": "g",
    "[lb_av]": "lb",
    "lb": "lb",
    "lbs": "lb",
    "cm": "cm",
    "m": "m",
    "[in_i]": "in",
    "in": "in",
    "cel": "°C",
    "°c": "°C",
    "degc": "°C",
    "[degf]": "°F",
    "°f": "°F",
    "degf": "°F",
    "/min": "/min",
    "{beats}/min": "/min",
    "beats/min": "/min",
    "bpm": "/min",
    "{breaths}/min": "/min",
}


def normalise_unit(unit: str) -> str:
    """Tidy a unit's spelling (``mm[Hg]`` -> ``mmHg``); unknown units are returned stripped."""
    u = (unit or "").strip()
    return _SYNONYMS.get(u.lower(), u)


@dataclass(frozen=True)
class Quantity:
    """One canonical quantity and how other units convert to it."""

    name: str
    unit: str
    conversions: dict[str, Callable[[float], float]]


def _scale(factor: float) -> Callable[[float], float]:
    return lambda v: v * factor


GLUCOSE = Quantity("glucose", "mg/dL", {"mmol/L": _scale(GLUCOSE_MG_PER_MMOL)})
HBA1C = Quantity(
    "HbA1c",
    "%",
    # IFCC mmol/mol -> NGSP %: NGSP = 0.09148 * IFCC + 2.152 (IFCC-NGSP master equation)
    {"mmol/mol": lambda v: 0.09148 * v + 2.152},
)
PRESSURE = Quantity("blood pressure", "mmHg", {"kPa": _scale(7.50062)})
BMI = Quantity("BMI", "kg/m2", {})
WEIGHT = Quantity("body weight", "kg", {"g": _scale(0.001), "lb": _scale(0.45359237)})
HEIGHT = Quantity("body height", "cm", {"m": _scale(100.0), "in": _scale(2.54)})
TEMPERATURE = Quantity("body temperature", "°C", {"°F": lambda v: (v - 32.0) * 5.0 / 9.0})
RATE = Quantity("rate", "/min", {})
CHOLESTEROL = Quantity("cholesterol", "mg/dL", {"mmol/L": _scale(CHOLESTEROL_MG_PER_MMOL)})
TRIGLYCERIDES = Quantity("triglycerides", "mg/dL", {"mmol/L": _scale(TRIGLYCERIDE_MG_PER_MMOL)})
CREATININE = Quantity("creatinine", "mg/dL", {"umol/L": _scale(1.0 / CREATININE_UMOL_PER_MG)})
UREA_N = Quantity("urea nitrogen", "mg/dL", {"mmol/L": _scale(UREA_N_MG_PER_MMOL)})
CALCIUM = Quantity("calcium", "mg/dL", {"mmol/L": _scale(CALCIUM_MG_PER_MMOL)})
ELECTROLYTE = Quantity("electrolyte", "mmol/L", {"meq/L": _scale(1.0), "mEq/L": _scale(1.0)})
HAEMOGLOBIN = Quantity("haemoglobin", "g/dL", {"g/L": _scale(0.1)})

#: LOINC code -> canonical quantity
CANONICAL: dict[str, Quantity] = {
    # glucose (serum/plasma, blood, capillary, CGM interstitial)
    "2339-0": GLUCOSE,
    "2345-7": GLUCOSE,
    "41653-7": GLUCOSE,
    "14743-9": GLUCOSE,
    "15074-8": GLUCOSE,
    "14749-6": GLUCOSE,
    "99504-3": GLUCOSE,
    "97507-8": GLUCOSE,
    # HbA1c
    "4548-4": HBA1C,
    "17856-6": HBA1C,
    "4549-2": HBA1C,
    "59261-8": HBA1C,
    # blood pressure
    "8480-6": PRESSURE,
    "8462-4": PRESSURE,
    "8478-0": PRESSURE,
    # body measures
    "39156-5": BMI,
    "29463-7": WEIGHT,
    "3141-9": WEIGHT,
    "8302-2": HEIGHT,
    "8310-5": TEMPERATURE,
    "8331-1": TEMPERATURE,
    "8867-4": RATE,
    "9279-1": RATE,
    # lipids
    "2093-3": CHOLESTEROL,
    "18262-6": CHOLESTEROL,
    "13457-7": CHOLESTEROL,
    "2085-9": CHOLESTEROL,
    "2571-8": TRIGLYCERIDES,
    # renal and electrolytes
    "38483-4": CREATININE,
    "2160-0": CREATININE,
    "6299-2": UREA_N,
    "3094-0": UREA_N,
    "49765-1": CALCIUM,
    "17861-6": CALCIUM,
    "2947-0": ELECTROLYTE,
    "2951-2": ELECTROLYTE,
    "6298-4": ELECTROLYTE,
    "2823-3": ELECTROLYTE,
    "2069-3": ELECTROLYTE,
    "2075-0": ELECTROLYTE,
    "20565-8": ELECTROLYTE,
    "2028-9": ELECTROLYTE,
    "718-7": HAEMOGLOBIN,
}


@dataclass(frozen=True)
class Converted:
    value: float | None
    unit: str
    flag: str  # "" when converted (or already canonical / unknown code)


def to_canonical(code: str, value: float | None, unit: str) -> Converted:
    """Convert ``value`` in ``unit`` to the canonical unit of LOINC ``code``.

    Returns the value unchanged (with a non-empty ``flag``) when the unit cannot be
    converted; codes without a canonical unit keep their (tidied) unit unflagged.
    """
    u = normalise_unit(unit)
    q = CANONICAL.get(code)
    if q is None or value is None:
        return Converted(value, u, "")
    if u == q.unit:
        return Converted(value, u, "")
    if not u:
        return Converted(value, u, f"no unit given; expected {q.unit} for {q.name}")
    fn = q.conversions.get(u)
    if fn is None:
        return Converted(value, u, f"cannot convert {u!r} to {q.unit} for {q.name}")
    return Converted(round(fn(value), 4), q.unit, "")
