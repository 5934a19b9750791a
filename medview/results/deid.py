"""De-identification per DICOM PS3.15 Annex E (Basic Application Level Confidentiality Profile).

The action for each attribute comes from ``annex_e_table.tsv`` (PS3.15 Table E.1-1, as data).
Two profile options can be selected:

* Retain Longitudinal Temporal Information with Modified Dates (``shift_days``): dates the table
  marks ``C`` for this option are moved by a whole number of days; times are kept.
* Retain Patient Characteristics (``keep_patient_characteristics``): sex, age, size, weight,
  ethnic group, smoking and pregnancy status are kept (``K``). The free-text rows this option
  marks ``C`` (allergies, patient state, pre-medication, special needs) cannot be cleaned
  reliably, so they are removed as in the basic profile.

Rules applied at every nesting level (sequence items included):

* ``X`` remove, ``Z`` empty value, ``D`` dummy value, ``U`` new UID, ``K`` keep. Compound actions
  of the table (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``) resolve to the least destructive form that
  leaks nothing (``D``, else ``Z``), so objects stay valid whatever the IOD's attribute type;
  ``X/Z/U*`` sequences are kept with every UID inside replaced.
* Private attributes (odd groups) are removed; group length elements are dropped.
* Beyond the table: every UI value that is not a well-known DICOM UID (class, transfer syntax,
  coding scheme) is replaced, and every PN value gets a dummy, so attributes added to the standard
  after the table's revision are handled too.
* UIDs map through ``2.25.<128-bit keyed hash>`` with a random per-export secret: consistent
  within one export (series, references and frame of reference stay linked), unlinkable across
  exports. The secret is never written anywhere.
* Pixel data are never touched: the header is rewritten and the original Pixel Data element is
  copied byte for byte.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

TABLE_FILE = Path(__file__).with_name("annex_e_table.tsv")

#: CID 7050 De-identification Method codes (scheme DCM)
CODE_BASIC = ("113100", "Basic Application Confidentiality Profile")
CODE_DATES_MODIFIED = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
CODE_PATIENT_CHARS = ("113108", "Retain Patient Characteristics Option")

PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)

#: actions beyond the table: Text Value (0040,A160), the free text of SR content items, gets a
#: dummy like the Content Sequence that holds it (basic profile: D)
EXTRA_RULES = {0x0040A160: "D"}

#: medview's Implementation Class UID (UUID-derived, PS3.5 B.2): uuid5(NAMESPACE_DNS, "medview")
IMPLEMENTATION_UID = "2.25.43299849430101624131377291050088287327"

# dummy values for action D, by VR (short enough for every VR's length limit)
_DUMMY_TEXT = "ANONYMIZED"
_DUMMY: dict[str, Any] = {
    "PN": "ANONYMOUS",
    "LO": _DUMMY_TEXT,
    "SH": _DUMMY_TEXT,
    "LT": _DUMMY_TEXT,
    "ST": _DUMMY_TEXT,
    "UT": _DUMMY_TEXT,
    "UC": _DUMMY_TEXT,
    "CS": "ANONYMIZED",
    "AE": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "UV": 0,
    "SV": 0,
    "FL": 0.0,
    "FD": 0.0,
}


@dataclass(frozen=True)
class Rule:
    """One row of PS3.15 Table E.1-1."""

    tag: str  # 8 hex digits, "X" for a repeating-group digit
    basic: str
    options: dict[str, str]
    keyword: str
    name: str


@lru_cache(maxsize=1)
def load_table() -> tuple[dict[int, Rule], list[tuple[int, int, Rule]]]:
    """The Annex E table: exact tags -> rule, and (mask, value, rule) for repeating groups."""
    exact: dict[int, Rule] = {}
    masked: list[tuple[int, int, Rule]] = []
    for line in TABLE_FILE.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        tag, basic, opts, keyword, name = line.split("\t")
        options = dict(o.split("=") for o in opts.split(",")) if opts != "-" else {}
        rule = Rule(tag, basic, options, keyword, name)
        if tag == "private":
            continue  # handled by the odd-group rule
        if "X" in tag:
            mask = int("".join("0" if c == "X" else "F" for c in tag), 16)
            value = int(tag.replace("X", "0"), 16)
            masked.append((mask, value, rule))
        else:
            exact[int(tag, 16)] = rule
    return exact, masked


def rule_for(tag: int) -> Rule | None:
    """The table row for ``tag`` (exact, else a repeating-group row such as 60xx,3000)."""
    exact, masked = load_table()
    rule = exact.get(tag)
    if rule is not None:
        return rule
    for mask, value, r in masked:
        if tag & mask == value:
            return r
    return None


@dataclass(frozen=True)
class ProfileOptions:
    """Which Annex E options apply to an export."""

    shift_days: int | None = None  # Retain Longitudinal Temporal Information, Modified Dates
    keep_patient_characteristics: bool = False  # Retain Patient Characteristics

    def codes(self) -> list[tuple[str, str]]:
        """CID 7050 codes for De-identification Method Code Sequence."""
        out = [CODE_BASIC]
        if self.shift_days is not None:
            out.append(CODE_DATES_MODIFIED)
        if self.keep_patient_characteristics:
            out.append(CODE_PATIENT_CHARS)
        return out

    def method_text(self) -> str:
        """The De-identification Method (0012,0063) text (LO: at most 64 characters)."""
        parts = ["PS3.15 E basic"]
        if self.shift_days is not None:
            parts.append("dates shifted")
        if self.keep_patient_characteristics:
            parts.append("patient chars kept")
        return ("medview " + ", ".join(parts))[:64]


def resolve_action(rule: Rule | None, vr: str, opts: ProfileOptions) -> str:
    """The single action (X, Z, D, U, K, C, or '' for "not in the table") for one attribute."""
    if rule is None:
        return ""
    action = rule.basic
    if opts.shift_days is not None and "dates" in rule.options:
        action = rule.options["dates"]  # C: shift
    if opts.keep_patient_characteristics and "patient" in rule.options:
        action = rule.options["patient"]
        if action == "C":  # free text: cannot be cleaned reliably -> basic action
            action = rule.basic
    if action == "X/Z/U*":
        return "U"  # sequences of references: keep, replace the UIDs inside
    if "/" in action:
        return "D" if "D" in action else "Z"
    return action


def _is_well_known_uid(value: str) -> bool:
    from pydicom.uid import UID_dictionary

    return value in UID_dictionary


_KEEP_UID_KEYWORDS = (
    "SOPClassUID",
    "ReferencedSOPClassUID",
    "MediaStorageSOPClassUID",
    "TransferSyntaxUID",
    "CodingSchemeUID",
    "ReferencedSOPClassUIDInFile",
    "ReferencedTransferSyntaxUIDInFile",
    "RelatedGeneralSOPClassUID",
    "OriginalSpecializedSOPClassUID",
    "SOPClassesInStudy",
    "RETIRED_SOPClassesInStudy",
    "AffectedSOPClassUID",
    "RequestedSOPClassUID",
)


def keeps_uid(keyword: str, value: str) -> bool:
    """Whether a UI value is kept: class / transfer-syntax UIDs and well-known DICOM UIDs."""
    return (
        keyword in _KEEP_UID_KEYWORDS
        or keyword.endswith("ClassUID")
        or _is_well_known_uid(value)
        or value.startswith("1.2.840.10008.")  # the DICOM standard's own root (classes, codes)
    )


@dataclass
class Deidentifier:
    """Applies the profile to datasets; one instance = one export (one UID mapping)."""

    options: ProfileOptions = field(default_factory=ProfileOptions)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    # -- replacement values ---------------------------------------------------
    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self.secret, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, value: str) -> str:
        """A new UID for ``value``: ``2.25.`` + a 128-bit keyed hash (same value -> same UID)."""
        value = str(value).strip("\0 ")
        if not value:
            return value
        return "2.25." + str(int.from_bytes(self._digest("uid", value)[:16], "big"))

    def pseudonym(self, patient_id: str, patient_name: str = "") -> str:
        """A stable pseudonym for a patient within this export (``ANON-`` + 10 hex digits)."""
        key = patient_id.strip() or patient_name.strip()
        return "ANON-" + self._digest("patient", key).hex()[:10].upper()

    def shift_date(self, value: str) -> str:
        """Move a DA value (or a DA range ``A-B``) by ``shift_days``; '' when unparseable."""
        days = self.options.shift_days or 0
        out = []
        for part in str(value).split("-"):
            part = part.strip()
            if not part:
                out.append("")
                continue
            try:
                d = _dt.datetime.strptime(part[:8], "%Y%m%d").date()
            except ValueError:
                return ""
            out.append((d + _dt.timedelta(days=days)).strftime("%Y%m%d"))
        return "-".join(out)

    def shift_datetime(self, value: str) -> str:
        """Move the date part of a DT value, keeping time and offset; '' when unparseable."""
        value = str(value).strip()
        if len(value) < 8:
            return ""
        date = self.shift_date(value[:8])
        return date + value[8:] if date else ""

    # -- datasets ---------------------------------------------------------------
    def dataset(self, ds: Any, top: bool = True) -> bool:
        """De-identify ``ds`` in place (recursing into sequences); True when anything changed.

        An element decoded only to be looked at (a UID that is kept, a sequence with nothing to
        change inside) is put back as it was read, so it is written back byte for byte.
        """
        from medview.results.splice import raw_item

        changed = False
        if top:
            pid = str(ds.get("PatientID", "") or "")
            pname = str(ds.get("PatientName", "") or "")
            pseud = self.pseudonym(pid, pname)
        for key in list(ds.keys()):
            tag = int(key)
            if tag in PIXEL_TAGS:
                continue
            group = tag >> 16
            if group % 2 == 1 or (tag & 0xFFFF) == 0:  # private, group length
                del ds[tag]
                changed = True
                continue
            action = resolve_action(rule_for(tag), "", self.options) or EXTRA_RULES.get(tag, "")
            if action in ("", "K") and _element_vr(ds, tag) not in ("UI", "PN", "SQ"):
                continue  # kept as read (raw elements are written back without decoding)
            raw = raw_item(ds, tag)
            if self._element(ds, ds[tag], action):
                changed = True
            elif getattr(raw, "is_raw", False) and isinstance(getattr(ds, "_dict", None), dict):
                ds._dict[key] = raw  # unchanged: back to the bytes as read
        if top:
            ds.PatientName = pseud
            ds.PatientID = pseud
            self._mark(ds)
        return changed or top

    def _element(self, ds: Any, elem: Any, action: str) -> bool:
        """Apply ``action`` to one element; True when it changed (or was removed)."""
        tag, vr = int(elem.tag), elem.VR
        if action == "X":
            del ds[tag]
            return True
        if action == "K" and vr != "SQ":
            return False
        if vr == "SQ":
            if action == "Z":
                elem.value = []
                return True
            changed = False
            for item in elem.value:  # D, U, K, C or unlisted: keep the structure, clean the items
                changed = self.dataset(item, top=False) or changed
            return changed
        if action == "Z":
            elem.value = b"" if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN") else ""
            return True
        if action == "C":
            return self._clean_date(elem)
        if action == "U" or (action in ("", "D") and vr == "UI"):
            return self._uids(elem, force=action == "U")
        if action == "D" or (action == "" and vr == "PN"):
            dummy = _DUMMY.get(vr)
            elem.value = dummy if dummy is not None else b""
            return True
        return False  # not in the table and not a UI/PN: kept (the profile retains them)

    def _uids(self, elem: Any, force: bool) -> bool:
        values = elem.value if elem.VM > 1 else [elem.value]
        kw = elem.keyword or ""
        new = []
        for v in values:
            s = str(v or "")
            if not s or (not force and keeps_uid(kw, s)) or (force and _is_well_known_uid(s)):
                new.append(s)
            else:
                new.append(self.uid(s))
        if new == [str(v or "") for v in values]:
            return False
        elem.value = new if elem.VM > 1 else new[0]
        return True

    def _clean_date(self, elem: Any) -> bool:
        vr = elem.VR
        values = elem.value if elem.VM > 1 else [elem.value]
        if vr == "DA":
            new = [self.shift_date(str(v)) if v else "" for v in values]
        elif vr == "DT":
            new = [self.shift_datetime(str(v)) if v else "" for v in values]
        elif vr == "TM":
            return False  # a whole-day shift keeps the time of day
        else:
            elem.value = ""
            return True
        elem.value = new if len(new) > 1 else new[0]
        return True

    def _mark(self, ds: Any) -> None:
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = self.options.method_text()
        items = []
        for value, meaning in self.options.codes():
            it = Dataset()
            it.CodeValue = value
            it.CodingSchemeDesignator = "DCM"
            it.CodeMeaning = meaning
            items.append(it)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = (
            "MODIFIED" if self.options.shift_days is not None else "REMOVED"
        )


def _element_vr(ds: Any, tag: int) -> str:
    """The VR of an element without decoding its value (dictionary VR for implicit VR)."""
    from medview.results.splice import raw_item

    raw = raw_item(ds, tag)
    vr = getattr(raw, "VR", None)
    if vr and vr != "UN":
        return str(vr)
    # implicit VR, or stored as UN: pydicom decodes it with the dictionary VR (SQ, UI, PN...)
    from pydicom.datadict import dictionary_VR

    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def burned_in_warning(ds: Any) -> str | None:
    """Why an image may carry burned-in identifying text, or None."""
    burned = str(ds.get("BurnedInAnnotation", "") or "").upper()
    modality = str(ds.get("Modality", "") or "").upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if burned == "YES":
        return "Burned In Annotation is YES: the pixels may show identifying text (not cleaned)"
    is_sc = sop_class.startswith("1.2.840.10008.5.1.4.1.1.7")
    if not burned and (modality in ("US", "SC", "OT") or is_sc):
        kind = f"{modality} secondary capture" if is_sc else modality
        return (
            f"{kind} image without Burned In Annotation: the pixels may show identifying "
            "text (not cleaned)"
        )
    return None


def identifying_values(ds: Any) -> dict[str, list[str]]:
    """The values a check must not find in an exported copy of ``ds`` (for tests and audits):
    patient name/ID/birth date, accession, institution, physicians' names, instance UIDs."""
    out: dict[str, list[str]] = {
        "names": [],
        "ids": [],
        "dates": [],
        "uids": [],
        "text": [],
    }

    def walk(d: Any) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    walk(item)
                continue
            if int(elem.tag) >> 16 == 0x7FE0 or elem.value in (None, "", b""):
                continue
            kw = elem.keyword or ""
            vals = elem.value if elem.VM > 1 else [elem.value]
            if elem.VR == "PN":
                out["names"].extend(str(v) for v in vals)
            elif elem.VR == "UI":
                out["uids"].extend(str(v) for v in vals if not keeps_uid(kw, str(v)))
            elif kw in ("PatientID", "AccessionNumber", "OtherPatientIDs", "StudyID"):
                out["ids"].extend(str(v) for v in vals)
            elif kw in ("PatientBirthDate",):
                out["dates"].extend(str(v) for v in vals)
            elif kw in ("InstitutionName", "InstitutionAddress", "StationName"):
                out["text"].extend(str(v) for v in vals)

    walk(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        out["uids"].append(str(meta.MediaStorageSOPInstanceUID))
    return out
