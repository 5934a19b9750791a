"""Prior studies on PACS nodes (Qt-free): finding them, and retrieving one.

:func:`find_remote_priors` (a worker function) asks every configured node (C-FIND at
study level on a DIMSE node, QIDO-RS on a DICOMweb one, through
:func:`medview.net.transfers.search`) for the studies of the patient in view, matched
on the exact Patient ID, and returns those that are not in the local database and not
dated after the study in view, newest first, each with the node it is on. The nodes
are asked at the same time; one that does not answer gives a one-line problem, the
others still answer. A match whose patient name differs from the one in view is kept
(the Patient ID is what identifies the patient) but flagged and reported.

:func:`retrieve_prior` (a worker function) retrieves one of them with
:func:`medview.net.transfers.retrieve` (C-GET, or WADO-RS on a DICOMweb node) into the
local store and database, with progress and cancel, and returns its main series as a
database :class:`~medview.io.SeriesInfo`, ready for the comparison path that local
priors take (:func:`medview.viewer.priors.find_priors`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medview.errors import Cancelled
from medview.io.model import format_da
from medview.net.common import DEFAULT_CALLING_AET, NetError, RemoteRefused
from medview.tasks import TaskState, ensure_state

if TYPE_CHECKING:
    from medview.io.model import SeriesInfo
    from medview.net.nodes import Node

#: seconds a node has to answer the prior search (it runs in the background)
SEARCH_TIMEOUT = 10.0

#: browser keys of PACS priors: ``pacs:<node name>|<study UID>``
REMOTE_PREFIX = "pacs:"


@dataclass
class RemotePrior:
    """One study of the patient in view that is on a PACS node, not here."""

    node: str  # the node's name (as configured)
    study_uid: str
    study_date: str = ""  # YYYYMMDD
    study_time: str = ""
    description: str = ""
    modalities: list[str] = field(default_factory=list)
    instances: int | None = None  # NumberOfStudyRelatedInstances, when the node says
    series: int | None = None
    accession: str = ""
    patient_id: str = ""
    patient_name: str = ""
    name_differs: bool = False  # same Patient ID, another name than the study in view

    @property
    def key(self) -> str:
        """The browser key of this prior."""
        return f"{REMOTE_PREFIX}{self.node}|{self.study_uid}"

    def label(self, node: bool = True) -> str:
        """``2019-03-02  CT Chest (CT)  on PACS: orthanc`` (without ``node``: no
        ``on PACS: ...``), for the browser and messages."""
        date = format_da(self.study_date) or "?"
        mods = f"({', '.join(self.modalities)})" if self.modalities else ""
        text = "  ".join(x for x in (date, " ".join(y for y in (self.description, mods) if y)) if x)
        return f"{text}  on PACS: {self.node}" if node else text


@dataclass
class RemoteSearch:
    """What :func:`find_remote_priors` found: the priors, and one line per problem."""

    priors: list[RemotePrior] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    asked: int = 0  # nodes asked
    failed: int = 0  # nodes that did not answer (each has a line in ``problems``)
    answered: int = 0  # nodes that have answered or failed (< asked: a partial result)


def _norm_name(name: Any) -> str:
    """A person name compared loosely: case, ``^`` vs spaces, trailing empty parts."""
    return " ".join(str(name or "").replace("^", " ").upper().split())


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _ask(
    node: Node, pid: str, calling_aet: str, timeout: float, inner: TaskState
) -> list[dict[str, Any]]:
    from medview.net.transfers import search

    return search(
        node,
        "study",
        {"patient_id": pid},
        calling_aet=calling_aet,
        timeout=timeout,
        state=inner,
    )


Answer = list[dict[str, Any]] | str  # a node's matches, or its one-line problem


def _ask_all(
    nodes: list[Node],
    pid: str,
    calling_aet: str,
    timeout: float,
    state: TaskState,
    on_answer: Callable[[dict[int, Answer]], None],
) -> dict[int, Answer]:
    """Every node asked at once (one thread each); ``on_answer(answers so far)`` each
    time one answers. Per node index its matches or a problem."""
    answers: dict[int, Answer] = {}
    inners = [TaskState() for _ in nodes]

    def work(n: int) -> None:
        try:
            found: Answer = _ask(nodes[n], pid, calling_aet, timeout, inners[n])
        except Cancelled:
            found = "cancelled"
        except NetError as exc:
            found = f"{nodes[n].name}: {_one_line(exc)}"
        except Exception as exc:  # a peer that answers nonsense is a problem, not a crash
            found = f"{nodes[n].name}: {type(exc).__name__}: {_one_line(exc)}"
        answers[n] = found

    threads = [
        threading.Thread(target=work, args=(n,), name=f"prior search {node.name}", daemon=True)
        for n, node in enumerate(nodes)
    ]
    for t in threads:
        t.start()
    done: set[int] = set()
    while len(done) < len(threads):
        next(t for n, t in enumerate(threads) if n not in done).join(0.05)
        if state.cancelled:
            for inner in inners:
                inner.cancel()
            raise Cancelled()
        ended = {n for n, t in enumerate(threads) if n not in done and not t.is_alive()}
        if ended:
            done |= ended
            state.progress(
                len(done) / len(threads), f"{len(done)} of {len(nodes)} node(s) answered"
            )
            on_answer({n: answers.get(n, f"{nodes[n].name}: no answer") for n in done})
    return {n: answers.get(n, f"{nodes[n].name}: no answer") for n in done}


def _local_studies(pid: str, db_path: str | None) -> set[str]:
    from medview.io.database import StudyDatabase

    db = StudyDatabase(db_path)
    try:
        return {
            str(s["study_uid"])
            for s in db.studies(text=pid)
            if str(s.get("patient_id") or "") == pid
        }
    finally:
        db.close()


def _prior_of(node: Node, m: dict[str, Any]) -> RemotePrior:
    mods = m.get("modalities") or []
    if isinstance(mods, str):
        mods = [x for x in mods.replace("\\", " ").split() if x]
    return RemotePrior(
        node=node.name or node.describe(),
        study_uid=str(m.get("study_uid") or ""),
        study_date=str(m.get("study_date") or "").replace("-", ""),
        study_time=str(m.get("study_time") or ""),
        description=str(m.get("description") or ""),
        modalities=[str(x) for x in mods],
        instances=m.get("instances") if isinstance(m.get("instances"), int) else None,
        series=m.get("series") if isinstance(m.get("series"), int) else None,
        accession=str(m.get("accession") or ""),
        patient_id=str(m.get("patient_id") or ""),
        patient_name=str(m.get("patient_name") or ""),
    )


def find_remote_priors(
    current: Any,
    nodes: list[Node] | None = None,
    calling_aet: str = DEFAULT_CALLING_AET,
    timeout: float = SEARCH_TIMEOUT,
    db_path: str | None = None,
    state: TaskState | None = None,
) -> RemoteSearch:
    """The patient's studies on the PACS nodes that are not in the local database.

    ``current`` is the study in view (anything with ``patient_id``, ``patient_name``,
    ``study_uid`` and ``study_date``, e.g. its main :class:`~medview.io.SeriesInfo`);
    ``nodes`` default to the configured ones. Only matches with exactly the same
    Patient ID are kept (a node may treat ``*``/``?`` in it as wildcards); the study in
    view, studies already local and studies dated after the one in view are left out;
    a study on several nodes is listed once, from the first node. Newest first.
    While nodes are still to answer, each answer hands the search so far to
    ``state.partial`` (a :class:`RemoteSearch` with ``answered < asked``): a slow or
    dead node does not hold back the others' priors."""
    state = ensure_state(state)
    out = RemoteSearch()
    pid = str(getattr(current, "patient_id", "") or "").strip()
    if not pid:
        return out
    if nodes is None:
        from medview.net.nodes import load_nodes

        try:
            nodes = load_nodes()
        except NetError as exc:
            out.problems.append(_one_line(exc))
            return out
    if not nodes:
        return out
    mine = str(getattr(current, "study_date", "") or "").replace("-", "")
    name = _norm_name(getattr(current, "patient_name", ""))
    local = _local_studies(pid, db_path)
    local.add(str(getattr(current, "study_uid", "") or ""))

    def collect(answers: dict[int, Answer]) -> RemoteSearch:
        """The search so far: the answered nodes' priors, in node order."""
        res = RemoteSearch(asked=len(nodes), answered=len(answers))
        seen: set[str] = set()
        for n, node in enumerate(nodes):
            answer = answers.get(n)
            if isinstance(answer, str):
                res.problems.append(answer)
                res.failed += 1
            for m in answer if isinstance(answer, list) else []:
                p = _prior_of(node, m)
                if p.patient_id != pid or not p.study_uid or p.study_uid in local | seen:
                    continue
                if mine and p.study_date and p.study_date > mine:
                    continue
                seen.add(p.study_uid)
                theirs = _norm_name(p.patient_name)
                if name and theirs and theirs != name:
                    p.name_differs = True
                    res.problems.append(
                        f"{p.node}: the study of {p.label().split('  ')[0]} has patient name "
                        f"{p.patient_name!r}, not {getattr(current, 'patient_name', '')!r} "
                        f"(same Patient ID {pid}): check it is the same patient"
                    )
                res.priors.append(p)
        res.priors.sort(key=lambda p: (p.study_date, p.study_time), reverse=True)
        return res

    def partial(answers: dict[int, Answer]) -> None:
        if len(answers) < len(nodes):  # the last answer is the result itself
            state.partial(collect(answers))

    return collect(_ask_all(nodes, pid, calling_aet, timeout, state, partial))


def _main_series(study_uid: str, pid: str, db_path: str | None) -> SeriesInfo:
    """The retrieved study's main series (most images) from the local database."""
    from medview.io.database import StudyDatabase
    from medview.viewer.session import series_from_database

    db = StudyDatabase(db_path)
    try:
        rows = db.series(study_uid)
        studies = [s for s in db.studies(text=pid) if s.get("study_uid") == study_uid]
    finally:
        db.close()
    if not rows or not studies:
        raise RemoteRefused(f"study {study_uid} is not in the local database after the retrieve")
    if str(studies[0].get("patient_id") or "") != pid:
        raise RemoteRefused(
            f"the retrieved study belongs to Patient ID {studies[0].get('patient_id')!r}, "
            f"not {pid!r}: not shown"
        )
    main = max(rows, key=lambda r: len(r.get("files") or []))
    return series_from_database(studies[0], main)


def retrieve_prior(
    prior: RemotePrior,
    node: Node | None = None,
    calling_aet: str = DEFAULT_CALLING_AET,
    timeout: float = 30.0,
    db_path: str | None = None,
    state: TaskState | None = None,
) -> SeriesInfo:
    """Retrieve ``prior`` (C-GET from a DIMSE node, WADO-RS from a DICOMweb one) into the
    local store and database, then return its main series (a database SeriesInfo).
    ``node`` defaults to the configured node of that name. Progress is the retrieve's
    (``retrieved n/N``); cancel stops it, whole instances already stored stay."""
    from medview.net.nodes import get_node
    from medview.net.transfers import Retrieval, retrieve

    state = ensure_state(state)
    node = node if node is not None else get_node(prior.node)
    job = Retrieval(node, prior.study_uid, method="get", title=prior.label())
    res = retrieve(job, calling_aet=calling_aet, timeout=timeout, db_path=db_path, state=state)
    state.check()
    if not int(res.get("stored", 0) or 0):
        # nothing new stored: fine when the study was already complete here
        try:
            return _main_series(prior.study_uid, prior.patient_id, db_path)
        except RemoteRefused:
            raise RemoteRefused(f"{node.describe()} sent no instance of the prior study") from None
    state.progress(1.0, f"retrieved {res.get('stored')} instance(s)")
    return _main_series(prior.study_uid, prior.patient_id, db_path)


__all__ = [
    "REMOTE_PREFIX",
    "RemotePrior",
    "RemoteSearch",
    "find_remote_priors",
    "retrieve_prior",
]
