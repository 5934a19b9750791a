"""The records part of the PDF report: the forecast plot and the treatment suggestions of the
record patient linked to the imaging study (Qt-free; the same core the panels use).

* The link is :func:`medview.records.link.link_patient` (patient ID, else name + birth date;
  never a guess): no link, no records section, only the reason.
* The forecast is :func:`medview.forecast.api.forecast_records` of the patient's glucose
  series when there is one, else of the numeric observation they have most of (the plot: the
  history, the forecast and its 80 % interval).
* The suggestions are :meth:`medview.treatments.Recommender.suggest` (top 5, with the safety
  checks and the notice of the recommender).

Each part that cannot be computed says why in one line instead of failing the report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from medview.tasks import TaskState, ensure_state

#: how many suggestions the report lists
SUGGESTIONS = 5


@dataclass
class RecordsSection:
    """What the report shows about the linked record patient."""

    patient_id: str = ""
    link_message: str = ""
    forecast: Any = None  # medview.forecast.api.ForecastResult
    forecast_note: str = ""
    suggestions: Any = None  # medview.treatments.recommender.SuggestionResult
    suggestions_note: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def linked(self) -> bool:
        return bool(self.patient_id)


def forecast_code(records: Any, patient_id: str) -> str:
    """The LOINC code to forecast: glucose if the patient has it, else the numeric
    observation with the most values; "" when there is none."""
    from medview.forecast.api import GLUCOSE_CODES

    counts = Counter(
        o.code
        for o in records.observations
        if o.patient_id == patient_id and o.value is not None and o.code
    )
    if not counts:
        return ""
    glucose = [c for c in GLUCOSE_CODES if counts.get(c, 0) >= 2]
    if glucose:
        return max(glucose, key=lambda c: counts[c])
    return max(sorted(counts), key=lambda c: counts[c])


def records_section(
    records: Any, study_patient: Any, state: TaskState | None = None
) -> RecordsSection:
    """Link ``study_patient`` (anything with ``patient_id``, ``patient_name``,
    ``patient_birth_date``: a :class:`~medview.io.SeriesInfo`) to ``records`` and compute its
    forecast and suggestions."""
    from medview.records.link import link_patient

    st = ensure_state(state)
    link = link_patient(
        records,
        str(getattr(study_patient, "patient_id", "") or ""),
        str(getattr(study_patient, "patient_name", "") or "").replace("^", " ").strip(),
        getattr(study_patient, "patient_birth_date", None) or None,
    )
    if not link.matched or not link.record_patient_id:
        return RecordsSection(link_message=link.message or "no record patient linked")
    pid = link.record_patient_id
    sec = RecordsSection(patient_id=pid, link_message=link.message)
    st.progress(0.2, "forecasting")
    sec.forecast, sec.forecast_note = _forecast(records, pid, st)
    st.progress(0.35, "treatment suggestions")
    sec.suggestions, sec.suggestions_note = _suggest(records, pid)
    return sec


def _forecast(records: Any, pid: str, st: TaskState) -> tuple[Any, str]:
    from medview.errors import MedviewError
    from medview.forecast.api import forecast_records

    code = forecast_code(records, pid)
    if not code:
        return None, "no numeric observations to forecast"
    try:
        return forecast_records(records, pid, code, state=st), ""
    except (MedviewError, ValueError) as exc:
        return None, f"no forecast: {exc}"


def _suggest(records: Any, pid: str) -> tuple[Any, str]:
    from medview.errors import MedviewError
    from medview.treatments import Recommender

    try:
        res = Recommender.from_records(records).suggest(pid, k=SUGGESTIONS)
    except (MedviewError, ValueError, KeyError) as exc:
        return None, f"no suggestions: {exc}"
    if res.status != "ok":
        return res, res.message or "not enough data for suggestions"
    return res, ""


def forecast_drawing(fc: Any, width: float, height: float) -> Any:
    """A reportlab Drawing of the forecast: history (black), forecast (blue) and its 80 %
    interval (dashed grey), x in hours (days for spans over 3 days) from the last value."""
    from reportlab.graphics.charts.lineplots import LinePlot
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors

    last = fc.history_times[-1] if fc.history_times else fc.times[0]
    span_h = abs((fc.times[-1] - last).total_seconds()) / 3600.0 if fc.times else 1.0
    unit, per = ("days", 24.0) if span_h > 72 else ("hours", 1.0)

    def scale(ts: list[Any]) -> list[float]:
        return [(t - last).total_seconds() / 3600.0 / per for t in ts]

    hx = scale(list(fc.history_times))
    fx = scale(list(fc.times))
    horizon = fx[-1] if fx else 1.0
    keep = [i for i, x in enumerate(hx) if x >= -4 * max(horizon, 1.0)]
    if len(keep) < 2:
        keep = list(range(max(0, len(hx) - 50), len(hx)))
    data = [
        [(hx[i], float(fc.history_values[i])) for i in keep],
        list(zip(fx, map(float, fc.values), strict=True)),
        list(zip(fx, map(float, fc.lower), strict=True)),
        list(zip(fx, map(float, fc.upper), strict=True)),
    ]
    data = [s for s in data if s]
    ys = [y for s in data for _x, y in s]
    pad = 0.05 * (max(ys) - min(ys) or 1.0)
    d = Drawing(width, height)
    lp = LinePlot()
    lp.x, lp.y, lp.width, lp.height = 40, 32, width - 60, height - 50
    lp.data = data
    lp.yValueAxis.valueMin, lp.yValueAxis.valueMax = min(ys) - pad, max(ys) + pad
    styles = [
        (colors.black, None),
        (colors.blue, None),
        (colors.grey, (2, 2)),
        (colors.grey, (2, 2)),
    ]
    for n, (colour, dash) in enumerate(styles[: len(data)]):
        lp.lines[n].strokeColor = colour
        lp.lines[n].strokeWidth = 1.2 if n < 2 else 0.8
        if dash:
            lp.lines[n].strokeDashArray = dash
    lp.xValueAxis.labelTextFormat = "%g"
    lp.yValueAxis.labelTextFormat = "%g"
    d.add(lp)
    title = f"{fc.display or fc.code} ({fc.unit}), method {fc.method}"
    d.add(String(40, height - 12, title, fontSize=8))
    d.add(
        String(
            40,
            4,
            f"{unit} from the last value; black: history, blue: forecast, dashed: 80 % interval",
            fontSize=7,
        )
    )
    return d


def story(section: RecordsSection, styles: Any) -> list[Any]:
    """The report's flowables for ``section``."""
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer

    from medview.disclaimers import APP

    out: list[Any] = [Paragraph("Linked records", styles["Heading2"])]
    if not section.linked:
        out.append(Paragraph(f"No record patient linked: {section.link_message}", styles["Normal"]))
        return out
    out.append(
        Paragraph(f"Record patient {section.patient_id} ({section.link_message})", styles["Normal"])
    )
    out.append(Paragraph("Forecast", styles["Heading3"]))
    fc = section.forecast
    if fc is not None and len(fc.times):
        out.append(forecast_drawing(fc, 170 * mm, 65 * mm))
        out.append(Paragraph("; ".join(fc.notes) or f"forecast by {fc.method}", styles["Italic"]))
    else:
        out.append(Paragraph(section.forecast_note or "no forecast", styles["Normal"]))
    out.append(Paragraph("Treatment suggestions", styles["Heading3"]))
    res = section.suggestions
    if res is not None and res.suggestions:
        for n, s in enumerate(res.suggestions, start=1):
            why = "; ".join(s.evidence[:2])
            out.append(
                Paragraph(
                    f"{n}. {s.display} ({s.kind}, score {s.score:.2f}) {why}", styles["Normal"]
                )
            )
        out.append(Paragraph(res.notice or APP, styles["Italic"]))
    else:
        out.append(Paragraph(section.suggestions_note or "no suggestions", styles["Normal"]))
    out.append(Spacer(1, 4))
    return out
