"""One entry point per network action for the GUI (Qt-free): echo, search, retrieve, send.

Each function picks the protocol from the node (DICOMweb when it has a URL, DIMSE
otherwise) and the retrieve method the user asked for, so the Query/Retrieve dialog and
"Send to..." run plain functions taking ``state: TaskState | None`` through the GUI's
worker slots. Errors are the :class:`~medview.net.common.NetError` subclasses of the
protocol modules, with a one-line ``str()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medview.net.common import DEFAULT_CALLING_AET, DEFAULT_TIMEOUT, BadRequest
from medview.net.nodes import Node
from medview.tasks import TaskState, ensure_state

#: retrieve methods: C-GET (no second port), C-MOVE to our own listener, WADO-RS
METHODS = ("get", "move", "wado")

#: the search fields the dialog offers (keyword arguments of ``find``)
SEARCH_KEYS = ("patient_id", "patient_name", "study_date", "modality", "accession", "study_uid")


def _proto(node: Node) -> Any:
    if node.is_dicomweb:
        from medview.net import dicomweb

        return dicomweb
    from medview.net import dimse

    return dimse


def echo(
    node: Node,
    calling_aet: str = DEFAULT_CALLING_AET,
    timeout: float = DEFAULT_TIMEOUT,
    state: TaskState | None = None,
) -> dict[str, Any]:
    """C-ECHO (or a one-result QIDO-RS query); ``{"node", "status", "ms"}``."""
    ensure_state(state).check()
    result: dict[str, Any] = _proto(node.validate()).echo(
        node, calling_aet=calling_aet, timeout=timeout
    )
    return result


def search(
    node: Node,
    level: str = "study",
    keys: dict[str, str] | None = None,
    calling_aet: str = DEFAULT_CALLING_AET,
    timeout: float = DEFAULT_TIMEOUT,
    state: TaskState | None = None,
) -> list[dict[str, Any]]:
    """C-FIND / QIDO-RS at ``level`` with the non-empty ``keys`` (see :data:`SEARCH_KEYS`,
    plus ``series_uid``). An empty answer is an empty list, not an error."""
    clean = {k: v.strip() for k, v in (keys or {}).items() if isinstance(v, str) and v.strip()}
    unknown = set(clean) - set(SEARCH_KEYS) - {"series_uid"}
    if unknown:
        raise BadRequest(f"unknown search field(s): {', '.join(sorted(unknown))}")
    found: list[dict[str, Any]] = _proto(node.validate()).find(
        node, level, calling_aet=calling_aet, timeout=timeout, state=state, **clean
    )
    return found


@dataclass
class Retrieval:
    """What one queued retrieve asks for."""

    node: Node
    study_uid: str
    series_uid: str = ""
    method: str = "get"  # one of METHODS
    dest_aet: str = ""  # C-MOVE destination: our own listener's AE title
    title: str = ""  # what the user saw (patient, date, description), for the queue

    def label(self) -> str:
        method = "WADO" if self.node.is_dicomweb else self.method.upper()
        what = "series" if self.series_uid else "study"
        uid = self.series_uid or self.study_uid
        name = self.title or f"...{uid[-12:]}"
        return f"{method} {what} {name} from {self.node.name}"


def retrieve(
    job: Retrieval,
    calling_aet: str = DEFAULT_CALLING_AET,
    timeout: float = DEFAULT_TIMEOUT,
    db_path: str | None = None,
    state: TaskState | None = None,
) -> dict[str, Any]:
    """Retrieve a study or series into the local store and database.

    ``get`` and ``wado`` store and index here and return ``{"stored", ...}``; ``move``
    asks the remote to send to ``dest_aet`` (the GUI's running listener, which stores,
    indexes and reports the arrivals) and returns the sub-operation counts with
    ``stored`` = completed ones."""
    node = job.node.validate()
    method = "wado" if node.is_dicomweb else job.method
    if method not in METHODS:
        raise BadRequest(f"unknown retrieve method {job.method!r}")
    if method == "wado" and not node.is_dicomweb:
        raise BadRequest(f"{node.describe()} is not a DICOMweb node: use C-GET or C-MOVE")
    series = job.series_uid or None
    if method == "move":
        from medview.net import dimse

        if not job.dest_aet:
            raise BadRequest("C-MOVE needs our listener running (Network > Listener settings)")
        res = dimse.move(
            node,
            job.study_uid,
            job.dest_aet,
            series_uid=series,
            calling_aet=calling_aet,
            timeout=timeout,
            state=state,
        )
        return dict(res) | {"stored": int(res.get("completed", 0)) + int(res.get("warning", 0))}
    out: dict[str, Any] = _proto(node).get(
        node,
        job.study_uid,
        series_uid=series,
        calling_aet=calling_aet,
        timeout=timeout,
        db_path=db_path,
        state=state,
    )
    return out


def database_files(study_uid: str, series_uid: str = "", db_path: str | None = None) -> list[str]:
    """The files of a local-database study (or one of its series)."""
    from medview.io.database import StudyDatabase

    db = StudyDatabase(db_path)
    try:
        rows = db.series(study_uid)
    finally:
        db.close()
    files = [
        str(f) for r in rows if not series_uid or r["series_uid"] == series_uid for f in r["files"]
    ]
    if not files:
        what = f"series {series_uid}" if series_uid else f"study {study_uid}"
        raise BadRequest(f"{what} is not in the local database")
    return files


def send(
    node: Node,
    study_uid: str,
    series_uid: str = "",
    calling_aet: str = DEFAULT_CALLING_AET,
    timeout: float = DEFAULT_TIMEOUT,
    db_path: str | None = None,
    state: TaskState | None = None,
) -> dict[str, Any]:
    """C-STORE (or STOW-RS) a local-database study or series to ``node``;
    ``{"sent", "failed", "warning", "errors"}``."""
    state = ensure_state(state)
    files = database_files(study_uid, series_uid, db_path)
    state.progress(0.0, f"sending {len(files)} instance(s)")
    res: dict[str, Any] = _proto(node.validate()).send(
        node, files, calling_aet=calling_aet, timeout=timeout, state=state
    )
    return res
