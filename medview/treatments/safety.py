"""Safety checks on treatment-suggestion candidates (Qt-free).

Every check yields :class:`SafetyFinding` objects; a finding with action
``"remove"`` keeps the candidate out of the suggestions (it is listed as removed,
with the rule and reason), ``"flag"`` keeps it but shows the warning.

* **ingredients** are read from the medication description (RxNorm display names such
  as ``"Acetaminophen 325 MG / Oxycodone Hydrochloride 5 MG Oral Tablet [Percocet]"``:
  package quantities and strengths dropped, salts stripped, brand packs looked up);
* **same-ingredient**: an ingredient the patient takes now (any strength or form) -
  removed; one the patient had before - flagged;
* **same-class**: a second drug of a therapeutic class the patient takes now - flagged;
* **allergy**: an active allergy/intolerance to one of the ingredients, or to a member
  of a cross-reactive class (penicillins, NSAIDs...) - removed; to another member of a
  class that is not cross-reactive - flagged;
* **withdrawn**: drugs withdrawn from the market - removed;
* **contraindication rules**: condition -> drug class rules, removed or flagged.

The tables (salts, brand packs, classes, allergy names, withdrawn drugs and the
contraindication rules with their sources) are data, in ``safety_rules.json`` next to
this module. They are small and curated for the drugs seen in the Synthea records;
this is decision support over local statistics, not a drug-safety database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from medview.treatments.data import TreatmentData

RULES_PATH = Path(__file__).with_name("safety_rules.json")

_NUM = re.compile(r"^\d+(\.\d+)?(/\d+(\.\d+)?)*$")
_UNIT = re.compile(
    r"^(mg|mcg|ug|g|ml|l|unt|units?|meq|mmol|%|actuat|hr|hrs|day|days)"
    r"(/(mg|mcg|ml|l|g|actuat|hr|day|unt))*$",
    re.IGNORECASE,
)
_PACKAGE = re.compile(r"^(nda|anda|bla)\d+$", re.IGNORECASE)
_FORM_WORDS = {
    "oral",
    "tablet",
    "capsule",
    "injection",
    "injectable",
    "solution",
    "suspension",
    "inhaler",
    "spray",
    "pack",
    "patch",
    "cream",
    "ointment",
    "extended",
    "delayed",
    "chewable",
    "prefilled",
    "syringe",
    "auto-injector",
    "drug",
    "implant",
    "system",
    "ring",
    "per",
}


@dataclass(frozen=True)
class SafetyFinding:
    """Why a candidate was removed or flagged."""

    action: str  # "remove" | "flag"
    rule: str  # "same-ingredient", "same-class", "allergy", "withdrawn", "min-support", rule id
    reason: str
    source: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(eq=False)  # hashed by identity (the ingredient cache is keyed on it)
class SafetyRules:
    """The curated tables of ``safety_rules.json`` (see :meth:`load`)."""

    path: Path
    salts: frozenset[str]
    keep_whole: frozenset[str]
    brands: dict[str, list[str]]
    classes: dict[str, list[str]]
    allergy_substances: dict[str, list[str]]
    cross_reactive: dict[str, str]  # class -> source
    withdrawn: dict[str, dict]  # ingredient -> entry (reason, source, year)
    contraindications: list[dict]
    class_of: dict[str, list[str]] = field(default_factory=dict)  # ingredient -> classes

    def __post_init__(self) -> None:
        for cls, members in self.classes.items():
            for ing in members:
                self.class_of.setdefault(ing, []).append(cls)

    @classmethod
    def load(cls, path: str | Path | None = None) -> SafetyRules:
        """Read the rules (default: the file shipped with medview; cached)."""
        return _load(str(path or RULES_PATH))

    def allergen_ingredients(self, substance: str, category: str = "") -> list[str]:
        """Ingredient names an allergy substance stands for ([] for foods and the like)."""
        name = re.sub(r"\s*\([^)]*\)\s*$", "", substance).strip().lower()
        if name in self.allergy_substances:
            return list(self.allergy_substances[name])
        if category == "medication" or name in self.class_of:
            return ingredients(name, self)
        return []


@lru_cache(maxsize=4)
def _load(path: str) -> SafetyRules:
    """Parse a rules file; any problem is a one-line :class:`MedviewError` naming it."""
    from medview.errors import MedviewError

    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MedviewError("safety rules file is missing", path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise MedviewError(f"cannot read safety rules: {exc}", path) from exc
    except json.JSONDecodeError as exc:
        raise MedviewError(f"invalid JSON at line {exc.lineno} ({exc.msg})", path) from exc
    try:
        return _parse(path, raw)
    except KeyError as exc:
        raise MedviewError(f"safety rules lack the table {exc.args[0]!r}", path) from exc
    except (TypeError, AttributeError, ValueError) as exc:
        raise MedviewError(f"malformed safety rules ({exc})", path) from exc


def _parse(path: str, raw: dict) -> SafetyRules:
    def no_about(d: dict) -> dict:
        return {k: v for k, v in d.items() if k != "about"}

    for rule in raw["contraindications"]:
        for key in ("id", "action", "drug_classes", "drug_ingredients", "condition_codes"):
            if key not in rule:
                raise KeyError(f"contraindications[].{key}")
        if rule["action"] not in ("remove", "flag"):
            raise ValueError(f"rule {rule['id']}: action must be remove or flag")
    return SafetyRules(
        path=Path(path),
        salts=frozenset(raw["salts"]),
        keep_whole=frozenset(raw["keep_whole"]),
        brands={k.lower(): list(v) for k, v in raw["brands"].items()},
        classes={k: list(v) for k, v in raw["classes"].items()},
        allergy_substances=no_about(raw["allergy_substances"]),
        cross_reactive=no_about(raw["allergy_cross_reactive_classes"]),
        withdrawn={e["ingredient"]: e for e in raw["withdrawn"]},
        contraindications=list(raw["contraindications"]),
    )


def _strip_salts(name: str, rules: SafetyRules) -> str:
    words = name.split()
    while len(words) > 1 and " ".join(words) not in rules.keep_whole and words[-1] in rules.salts:
        words.pop()
    return " ".join(words)


def ingredients(display: str, rules: SafetyRules | None = None) -> list[str]:
    """Lower-case ingredient names in a medication description, in order, no repeats."""
    return list(_ingredients(display, rules or SafetyRules.load()))


@lru_cache(maxsize=4096)
def _ingredients(display: str, rules: SafetyRules) -> tuple[str, ...]:
    text = re.sub(r"\[([^\]]*)\]", " ", display or "")
    brand = re.findall(r"\[([^\]]*)\]", display or "")
    tokens = text.split()
    while tokens and _PACKAGE.match(tokens[0]):
        tokens.pop(0)
    while len(tokens) >= 2 and _NUM.match(tokens[0]) and _UNIT.match(tokens[1]):
        del tokens[:2]
    if tokens and tokens[0].lower() in rules.brands:
        return tuple(rules.brands[tokens[0].lower()])
    out: list[str] = []
    for part in " ".join(tokens).split(" / "):
        words = part.split()
        name: list[str] = []
        for i, w in enumerate(words):
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if _NUM.match(w) and (not nxt or _UNIT.match(nxt)):
                break
            if w.lower() in _FORM_WORDS and name:
                break
            name.append(w)
        ing = _strip_salts(" ".join(name).lower(), rules)
        if ing and ing not in out:
            out.append(ing)
    if not out:
        for b in brand:
            out.extend(rules.brands.get(b.strip().lower(), []))
    return tuple(out)


def drug_classes(ingr: Iterable[str], rules: SafetyRules | None = None) -> list[str]:
    """Therapeutic classes of the ingredients (table order of first appearance)."""
    rules = rules or SafetyRules.load()
    out: list[str] = []
    for i in ingr:
        for c in rules.class_of.get(i, []):
            if c not in out:
                out.append(c)
    return out


@dataclass
class PatientSafety:
    """What the checks need to know about one patient."""

    current: dict[str, str]  # ingredient -> description of the current medication
    past: dict[str, str]  # ingredient -> description of an earlier medication
    current_classes: dict[str, str]  # class -> description of the current medication
    allergies: list[tuple[str, set[str]]]  # (allergy display, allergen ingredients)
    conditions: list[tuple[str, str, bool]]  # (code, display, active)


class SafetyChecker:
    """Checks the candidates of one :class:`TreatmentData` against :class:`SafetyRules`."""

    def __init__(self, data: TreatmentData, rules: SafetyRules | None = None) -> None:
        self.data = data
        self.rules = rules or SafetyRules.load()
        self.item_ingredients: list[list[str]] = []
        for key in data.items:
            kind = key.split(":", 1)[0]
            disp = data.item_display.get(key, "")
            self.item_ingredients.append(
                ingredients(disp, self.rules) if kind == "medication" else []
            )

    def patient(self, patient: str, working: Sequence[str] = ()) -> PatientSafety:
        d, rules = self.data, self.rules
        current: dict[str, str] = {}
        past: dict[str, str] = {}
        classes: dict[str, str] = {}
        cur = d.current.get(patient, set())
        pi = d.p_index.get(patient)
        if pi is not None:
            for j in np.flatnonzero(d.X[pi]):
                key = d.items[j]
                disp = d.item_display.get(key, key)
                target = current if key in cur else past
                for ing in self.item_ingredients[j]:
                    target.setdefault(ing, disp)
                    if key in cur:
                        for c in rules.class_of.get(ing, []):
                            classes.setdefault(c, disp)
        allergies = []
        for a in d.allergies.get(patient, []):
            if a.is_active:
                names = set(rules.allergen_ingredients(a.display, a.category))
                if names:
                    allergies.append((a.display, names))
        conds: list[tuple[str, str, bool]] = []
        if pi is not None:
            for ci in np.flatnonzero(d.C[pi]):
                ccode = d.conditions[ci]
                conds.append((ccode, d.condition_display.get(ccode, ""), bool(d.C_active[pi, ci])))
        for code in working:
            conds.append((code, d.condition_display.get(code, ""), True))
        return PatientSafety(current, past, classes, allergies, conds)

    def check(self, j: int, ps: PatientSafety) -> list[SafetyFinding]:
        """Findings for candidate item ``j`` (removals first)."""
        ingr = self.item_ingredients[j]
        if not ingr:
            return []
        rules = self.rules
        out: list[SafetyFinding] = []
        for ing in ingr:
            w = rules.withdrawn.get(ing)
            if w is not None:
                out.append(
                    SafetyFinding("remove", "withdrawn", f"{ing}: {w['reason']}", w["source"])
                )
            if ing in ps.current:
                out.append(
                    SafetyFinding(
                        "remove",
                        "same-ingredient",
                        f"the patient already takes {ing} ({ps.current[ing]})",
                    )
                )
            elif ing in ps.past:
                out.append(
                    SafetyFinding(
                        "flag",
                        "same-ingredient-past",
                        f"the patient had {ing} before ({ps.past[ing]}), not current",
                    )
                )
        classes = drug_classes(ingr, rules)
        for allergy, names in ps.allergies:
            hit = sorted(names & set(ingr))
            if hit:
                out.append(
                    SafetyFinding(
                        "remove", "allergy", f"allergy/intolerance to {allergy}: contains {hit[0]}"
                    )
                )
                continue
            allergen_classes = drug_classes(names, rules)
            for c in classes:
                if c not in allergen_classes:
                    continue
                if c in rules.cross_reactive:
                    out.append(
                        SafetyFinding(
                            "remove",
                            "allergy",
                            f"allergy/intolerance to {allergy}: same class ({c}), cross-reactive",
                            rules.cross_reactive[c],
                        )
                    )
                else:
                    out.append(
                        SafetyFinding(
                            "flag",
                            "allergy-class",
                            f"allergy/intolerance to {allergy}: same class ({c})",
                        )
                    )
                break
        for c in classes:
            if c in ps.current_classes and not (set(ingr) & set(ps.current)):
                out.append(
                    SafetyFinding(
                        "flag",
                        "same-class",
                        f"a second drug of the class {c}: the patient already takes "
                        f"{ps.current_classes[c]}",
                    )
                )
        for rule in rules.contraindications:
            if not (
                set(rule["drug_ingredients"]) & set(ingr)
                or set(rule["drug_classes"]) & set(classes)
            ):
                continue
            words = [w.lower() for w in rule["condition_words"]]
            for code, display, active in ps.conditions:
                if rule["active_only"] and not active:
                    continue
                low = display.lower()
                if code in rule["condition_codes"] or any(w in low for w in words):
                    out.append(
                        SafetyFinding(
                            rule["action"],
                            rule["id"],
                            f"{rule['reason']} ({display or code}{'' if active else ', resolved'})",
                            rule["source"],
                        )
                    )
                    break
        out.sort(key=lambda f: f.action != "remove")
        return out
