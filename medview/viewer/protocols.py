"""Hanging protocols: which layout, series, plane and window a study opens with (Qt-free).

A :class:`Protocol` is a :class:`Rule` (matched on the study's modality, body part,
study/series descriptions, number of series and whether the patient has prior
studies) and what to do when it matches: a layout (``"1x1"``, ``"1x2"``, ``"2x2"``,
``"mpr"``, or ``"grid"``: 1x1, 1x2 or 2x2 by the number of series) and one
:class:`Placement` per viewport (which series of the study, or the most recent
prior, which plane, which window preset). :func:`choose` takes the first matching
protocol, the user's own before :data:`DEFAULT_PROTOCOLS`; :func:`plan` turns it into
per-viewport assignments. Protocols are plain data (:meth:`Protocol.to_dict` /
:func:`protocol_from_dict`) saved by the GUI in the user's settings.

Defaults: CR/DX/DR/MG radiographs 1x1, or 1x2 beside the most recent prior; a chest
CT axial with a lung window beside the same slices with a mediastinal window (MPR
on demand, key M); any other CT the three-plane MPR with a soft-tissue window; MR
the grid of its series with the files' windows. A study no protocol matches keeps
the layout on screen when it is a volume and opens 1x1 when it is a single image
(:data:`FALLBACK`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

#: the layouts a protocol may ask for ("grid": 1x1/1x2/2x2 by the number of series)
PROTOCOL_LAYOUTS: tuple[str, ...] = ("1x1", "1x2", "2x2", "mpr", "3d", "grid")
#: viewports each fixed layout places a series in
LAYOUT_SIZE: dict[str, int] = {"1x1": 1, "1x2": 2, "2x2": 4, "mpr": 1, "3d": 1}
#: the name of the rule used when no protocol matches
FALLBACK = "no protocol (layout kept)"


@dataclass(frozen=True)
class StudyFacts:
    """What a rule is matched on, taken from the study's series headers."""

    modality: str = ""
    body_part: str = ""
    descriptions: tuple[str, ...] = ()
    series_count: int = 1
    has_prior: bool = False
    slices: int = 1  # of the main (largest) series

    @classmethod
    def of(cls, series: Sequence[Any], priors: int = 0) -> StudyFacts:
        """Facts of one study from its :class:`~medview.io.model.SeriesInfo` list."""
        main = max(series, key=lambda s: int(getattr(s, "slices", 0) or 0)) if series else None
        insts = getattr(main, "instances", None) or []
        texts = [getattr(main, "study_description", "") or ""]
        texts += [getattr(s, "description", "") or "" for s in series]
        return cls(
            modality=str(getattr(main, "modality", "") or "").upper(),
            body_part=str(getattr(insts[0], "body_part", "") if insts else "").upper(),
            descriptions=tuple(t for t in texts if t),
            series_count=len(series),
            has_prior=priors > 0,
            slices=int(getattr(main, "slices", 0) or 0),
        )


@dataclass(frozen=True)
class Rule:
    """When a protocol applies. Empty tuples and None match anything; keywords are
    case-insensitive substrings of the body part or of any description."""

    modalities: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    min_series: int = 1
    max_series: int | None = None
    priors: bool | None = None  # True: only with a prior study; False: only without

    def matches(self, facts: StudyFacts) -> bool:
        """True when every condition holds for ``facts``."""
        if self.modalities and facts.modality not in {m.upper() for m in self.modalities}:
            return False
        if self.keywords:
            texts = [facts.body_part.lower(), *(d.lower() for d in facts.descriptions)]
            if not any(k.lower() in t for k in self.keywords for t in texts if t):
                return False
        if facts.series_count < self.min_series:
            return False
        if self.max_series is not None and facts.series_count > self.max_series:
            return False
        return self.priors is None or self.priors == facts.has_prior


@dataclass(frozen=True)
class Placement:
    """What one viewport shows: series ``series`` of the study in reading order (None:
    the main, largest series) or, with ``prior``, the most recent prior's main series;
    ``preset`` a window preset name ("lung", "mediastinum", "file", ...) or None for the
    default window; ``window`` an explicit (center, width) that wins over the preset."""

    series: int | None = None
    prior: bool = False
    plane: str = "axial"
    preset: str | None = None
    window: tuple[float, float] | None = None


@dataclass(frozen=True)
class Protocol:
    """A named rule and the layout and placements it hangs."""

    name: str
    rule: Rule
    layout: str
    placements: tuple[Placement, ...] = field(default_factory=tuple)
    user: bool = False  # saved by the user (listed first)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists, no nulls: the user's settings store it)."""
        d = asdict(self)
        d.pop("user", None)
        out = _plain(d)
        assert isinstance(out, dict)
        return out


def _plain(value: Any) -> Any:
    """Tuples as lists, None entries of dicts left out (read back as the defaults)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Assignment:
    """One viewport of a :func:`plan`: ``position`` in the layout, the series to show
    (``series`` index into the study's series list, or ``prior`` index into the
    priors), its plane and window."""

    position: int
    series: int | None
    prior: int | None
    plane: str
    preset: str | None
    window: tuple[float, float] | None


_RADIOGRAPHS = ("CR", "DX", "DR", "MG", "RG", "PX")
_CHEST = ("chest", "thorax", "thx", "lung", "pulmo", "thorac")

DEFAULT_PROTOCOLS: tuple[Protocol, ...] = (
    Protocol(
        "Radiograph with prior",
        Rule(modalities=_RADIOGRAPHS, priors=True),
        "1x2",
        (Placement(), Placement(prior=True)),
    ),
    Protocol("Radiograph", Rule(modalities=_RADIOGRAPHS), "1x1", (Placement(),)),
    Protocol(
        "CT chest",
        Rule(modalities=("CT",), keywords=_CHEST),
        "1x2",
        (Placement(preset="lung"), Placement(preset="mediastinum")),
    ),
    Protocol("CT", Rule(modalities=("CT",)), "mpr", (Placement(preset="mediastinum"),)),
    Protocol(
        "MR series grid",
        Rule(modalities=("MR",)),
        "grid",
        tuple(Placement(series=n, preset="file") for n in range(4)),
    ),
)


def main_study(series: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """Split series scanned together (one command line, or a folder holding several
    studies) into the study to hang and the series of the other studies, both in scan
    order. The study hung is the one holding the series with the most images (the first
    scanned on a tie): a CT opened with radiographs is read as the CT."""
    if not series:
        return [], []
    main = max(range(len(series)), key=lambda n: (int(getattr(series[n], "slices", 0) or 0), -n))
    uid = getattr(series[main], "study_uid", "")
    study = [s for s in series if getattr(s, "study_uid", "") == uid]
    return study, [s for s in series if getattr(s, "study_uid", "") != uid]


def choose(facts: StudyFacts, user: Iterable[Protocol] = ()) -> Protocol | None:
    """The first protocol whose rule matches: the user's, then :data:`DEFAULT_PROTOCOLS`.
    None when none matches (the caller keeps its layout, see :data:`FALLBACK`)."""
    for proto in (*user, *DEFAULT_PROTOCOLS):
        if proto.rule.matches(facts):
            return proto
    return None


def _layout_for(proto: Protocol, series_count: int) -> str:
    if proto.layout != "grid":
        return proto.layout
    return "1x1" if series_count <= 1 else "1x2" if series_count == 2 else "2x2"


def plan(proto: Protocol, series_count: int, prior_count: int = 0) -> tuple[str, list[Assignment]]:
    """(layout, assignments) for a study of ``series_count`` series with ``prior_count``
    prior studies. Placements naming a series or prior that does not exist are left out
    (their viewport stays empty)."""
    layout = _layout_for(proto, series_count)
    out: list[Assignment] = []
    for pos, pl in enumerate(proto.placements[: LAYOUT_SIZE[layout]]):
        if pl.prior:
            if prior_count < 1:
                continue
            out.append(Assignment(pos, None, 0, pl.plane, pl.preset, pl.window))
        elif pl.series is None or 0 <= pl.series < series_count:
            out.append(Assignment(pos, pl.series, None, pl.plane, pl.preset, pl.window))
    return layout, out


def protocol_from_view(
    name: str, facts: StudyFacts, layout: str, views: Sequence[Placement]
) -> Protocol:
    """ "Save current layout as protocol": a user protocol for studies of this modality
    (and body part, when the study names one) that hangs ``views`` in ``layout``."""
    if layout not in PROTOCOL_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}")
    keywords = (facts.body_part.lower(),) if facts.body_part else ()
    modalities = (facts.modality,) if facts.modality else ()
    rule = Rule(modalities=modalities, keywords=keywords)
    return Protocol(name.strip() or "My protocol", rule, layout, tuple(views), user=True)


def protocol_from_dict(data: dict[str, Any]) -> Protocol:
    """A protocol from :meth:`Protocol.to_dict` data; ``ValueError`` naming what is wrong."""
    try:
        r = dict(data.get("rule") or {})
        rule = Rule(
            modalities=tuple(str(m).upper() for m in r.get("modalities") or ()),
            keywords=tuple(str(k) for k in r.get("keywords") or ()),
            min_series=int(r.get("min_series", 1)),
            max_series=None if r.get("max_series") is None else int(r["max_series"]),
            priors=None if r.get("priors") is None else bool(r["priors"]),
        )
        places = []
        for p in data.get("placements") or ():
            win = p.get("window")
            places.append(
                Placement(
                    series=None if p.get("series") is None else int(p["series"]),
                    prior=bool(p.get("prior", False)),
                    plane=str(p.get("plane", "axial")),
                    preset=None if p.get("preset") is None else str(p["preset"]),
                    window=None if win is None else (float(win[0]), float(win[1])),
                )
            )
        proto = Protocol(str(data["name"]), rule, str(data["layout"]), tuple(places), user=True)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ValueError(f"not a hanging protocol ({type(exc).__name__}: {exc})") from None
    if proto.layout not in PROTOCOL_LAYOUTS:
        raise ValueError(f"unknown layout {proto.layout!r}")
    if any(p.plane not in ("axial", "coronal", "sagittal") for p in proto.placements):
        raise ValueError("a placement's plane must be axial, coronal or sagittal")
    return proto


def user_protocols(data: object) -> tuple[list[Protocol], list[str]]:
    """The user's saved protocols (a list of dicts) and one line per entry left out."""
    out: list[Protocol] = []
    problems: list[str] = []
    for n, item in enumerate(data if isinstance(data, list) else []):
        try:
            out.append(protocol_from_dict(item if isinstance(item, dict) else {}))
        except ValueError as exc:
            problems.append(f"hanging protocol {n + 1}: {exc}")
    return out, problems


__all__ = [
    "DEFAULT_PROTOCOLS",
    "FALLBACK",
    "Assignment",
    "Placement",
    "Protocol",
    "Rule",
    "StudyFacts",
    "choose",
    "main_study",
    "plan",
    "protocol_from_dict",
    "protocol_from_view",
    "user_protocols",
]
