"""DIMSE SCU operations (pynetdicom): C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE.

Each is a plain function; the long ones take ``state: TaskState | None`` for progress
and cancellation, so a dialog runs them on a worker. Failures raise
:class:`~medview.net.common.Unreachable` (no connection, timeout),
:class:`~medview.net.common.RemoteRefused` (association rejected, failure status) or
:class:`~medview.net.common.BadRequest` (invalid input).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from medview.errors import Cancelled, one_line
from medview.net.common import (
    DEFAULT_CALLING_AET,
    DEFAULT_TIMEOUT,
    PATIENT_ROOT_FIND,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    VERIFICATION,
    BadRequest,
    RemoteRefused,
    Unreachable,
    check_aet,
    check_date_range,
    check_uid,
    get_storage_contexts,
)
from medview.net.nodes import Node
from medview.net.reactor import make_event_driven
from medview.tasks import TaskState, ensure_state

LEVELS = ("patient", "study", "series")

# Return keys asked for at each level, with medview's snake_case names.
_KEYS: dict[str, list[tuple[str, str]]] = {
    "patient": [
        ("PatientID", "patient_id"),
        ("PatientName", "patient_name"),
        ("PatientBirthDate", "birth_date"),
        ("PatientSex", "sex"),
        ("NumberOfPatientRelatedStudies", "studies"),
    ],
    "study": [
        ("PatientID", "patient_id"),
        ("PatientName", "patient_name"),
        ("PatientBirthDate", "birth_date"),
        ("StudyInstanceUID", "study_uid"),
        ("StudyDate", "study_date"),
        ("StudyTime", "study_time"),
        ("StudyDescription", "description"),
        ("AccessionNumber", "accession"),
        ("ModalitiesInStudy", "modalities"),
        ("NumberOfStudyRelatedSeries", "series"),
        ("NumberOfStudyRelatedInstances", "instances"),
    ],
    "series": [
        ("PatientID", "patient_id"),
        ("StudyInstanceUID", "study_uid"),
        ("SeriesInstanceUID", "series_uid"),
        ("Modality", "modality"),
        ("SeriesNumber", "series_number"),
        ("SeriesDescription", "description"),
        ("NumberOfSeriesRelatedInstances", "instances"),
    ],
}


def _json_value(value: Any) -> Any:
    """A pydicom element value as JSON: str, int, float or a list of them."""
    from pydicom.multival import MultiValue

    if value is None:
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)


def match_dict(ds: Any, level: str) -> dict[str, Any]:
    """One C-FIND / QIDO match as a JSON object: ``level``, the snake_case fields and the
    returned attributes under their DICOM keywords."""
    out: dict[str, Any] = {"level": level}
    for keyword, name in _KEYS[level]:
        value = _json_value(ds.get(keyword, None)) if keyword in ds else ""
        if name in ("studies", "series", "instances", "series_number"):
            try:
                value = int(value) if value not in ("", None) else None
            except (TypeError, ValueError):
                value = None
        if name == "modalities" and isinstance(value, str):
            value = [value] if value else []
        out[name] = value
    for elem in ds:
        if elem.keyword and elem.keyword not in ("QueryRetrieveLevel", "SpecificCharacterSet"):
            if elem.VR != "SQ":
                out[elem.keyword] = _json_value(elem.value)
    return out


def match_keys(
    level: str = "study",
    patient_id: str | None = None,
    patient_name: str | None = None,
    study_date: str | None = None,
    modality: str | None = None,
    study_uid: str | None = None,
    accession: str | None = None,
    series_uid: str | None = None,
) -> dict[str, str]:
    """The matching keys given, checked, as DICOM keyword -> value: those of a C-FIND
    identifier (:func:`build_query`) and the filters of a QIDO-RS search
    (:func:`medview.net.dicomweb.find`). ``modality`` matches ``ModalitiesInStudy`` at the
    study level, ``Modality`` at the series level; ``series_uid`` counts at the series
    level only; the patient level takes the patient ID and name only."""
    keys: dict[str, str] = {}
    if patient_id:
        keys["PatientID"] = patient_id
    if patient_name:
        keys["PatientName"] = patient_name
    if level == "patient":
        if study_date or modality or study_uid or accession:
            raise BadRequest("patient-level queries match on patient ID and name only")
        return keys
    date = check_date_range(study_date)
    if date:
        keys["StudyDate"] = date
    if accession:
        keys["AccessionNumber"] = accession
    if study_uid:
        keys["StudyInstanceUID"] = check_uid(study_uid, "study UID")
    if modality:
        keys["ModalitiesInStudy" if level == "study" else "Modality"] = modality.upper()
    if series_uid and level == "series":
        keys["SeriesInstanceUID"] = check_uid(series_uid, "series UID")
    return keys


def build_query(level: str = "study", **keys: str | None) -> Any:
    """The C-FIND identifier for ``level`` with the matching ``keys`` of :func:`match_keys`
    (``*``/``?`` wildcards in IDs and names, date ranges ``YYYYMMDD-YYYYMMDD``)."""
    from pydicom.dataset import Dataset

    level = (level or "study").lower()
    if level not in LEVELS:
        raise BadRequest(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    matching = match_keys(level, **keys)
    ds = Dataset()
    ds.QueryRetrieveLevel = level.upper()
    for keyword, _ in _KEYS[level]:
        setattr(ds, keyword, "")
    for keyword, value in matching.items():
        setattr(ds, keyword, value)
    return ds


# -- associations -------------------------------------------------------------------


def _make_ae(calling_aet: str, timeout: float, max_pdu: int = 1024 * 1024) -> Any:
    from pynetdicom import AE

    ae = make_event_driven(AE(ae_title=check_aet(calling_aet, "calling AE title")))
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    ae.maximum_pdu_size = max_pdu  # what we receive in; the sender's PDUs are its choice
    return ae


def _associate(
    ae: Any,
    node: Node,
    retries: int = 0,
    ext_neg: list[Any] | None = None,
    evt_handlers: list[Any] | None = None,
) -> Any:
    """Open an association or raise Unreachable / RemoteRefused with one line."""
    node.validate()
    if node.is_dicomweb:
        raise BadRequest("this node is a DICOMweb service; DIMSE needs host, port and AE title")
    attempt = 0
    while True:
        try:
            ctx = node.ssl_context()
        except (OSError, ValueError) as exc:
            raise BadRequest(f"cannot load the TLS files ({one_line(exc)})") from None
        assoc = ae.associate(
            node.host,
            int(node.port),
            ae_title=node.aet,
            ext_neg=ext_neg,
            evt_handlers=evt_handlers,
            tls_args=(ctx, node.host) if ctx is not None else None,
        )
        if assoc.is_established:
            return assoc
        if assoc.is_rejected:
            raise RemoteRefused(
                f"{node.describe()} rejected the association (is our AE title "
                f"{ae.ae_title} allowed there?)"
            )
        if attempt >= retries:
            raise Unreachable(
                f"{node.describe()} could not be reached (connection refused, timed out or dropped)"
            )
        attempt += 1
        time.sleep(min(2.0, 0.25 * 2**attempt))


def _status(ds: Any) -> int:
    return int(getattr(ds, "Status", 0xC000)) if ds is not None else -1


def echo(
    node: Node,
    calling_aet: str = DEFAULT_CALLING_AET,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 0,
) -> dict[str, Any]:
    """C-ECHO; returns ``{"node", "status", "ms"}``."""
    ae = _make_ae(calling_aet, timeout)
    ae.add_requested_context(VERIFICATION)
    t0 = time.perf_counter()
    with _association(ae, node, retries) as assoc:
        status = assoc.send_c_echo()
    code = _status(status)
    if code == -1:
        raise Unreachable(f"{node.describe()} did not answer the C-ECHO")
    if code != 0:
        raise RemoteRefused(f"{node.describe()} answered C-ECHO with status 0x{code:04X}")
    return {
        "node": node.describe(),
        "status": code,
        "ms": round(1000 * (time.perf_counter() - t0), 1),
    }


@contextmanager
def _association(ae: Any, node: Node, retries: int = 0, **options: Any) -> Iterator[Any]:
    """An association (:func:`_associate` with ``options``) for a ``with`` block: aborted
    when the task is cancelled inside it, released when the block ends."""
    assoc = _associate(ae, node, retries, **options)
    try:
        yield assoc
    except Cancelled:
        assoc.abort()
        raise
    finally:
        _release(assoc)


def _release(assoc: Any) -> None:
    try:
        if assoc.is_established:
            assoc.release()
    except Exception:
        assoc.abort()


def find(
    node: Node,
    level: str = "study",
    calling_aet: str = DEFAULT_CALLING_AET,
    timeout: float = DEFAULT_TIMEOUT,
    state: TaskState | None = None,
    retries: int = 0,
    **keys: str | None,
) -> list[dict[str, Any]]:
    """C-FIND at ``level``; ``keys`` are those of :func:`match_keys`. One dict per match."""
    state = ensure_state(state)
    query = build_query(level, **keys)
    level = str(query.QueryRetrieveLevel).lower()
    model = PATIENT_ROOT_FIND if level == "patient" else STUDY_ROOT_FIND
    ae = _make_ae(calling_aet, timeout)
    ae.add_requested_context(model)
    out: list[dict[str, Any]] = []
    with _association(ae, node, retries) as assoc:
        for status, ident in assoc.send_c_find(query, model):
            code = _status(status)
            if code == -1:
                raise Unreachable(f"{node.describe()} stopped answering the C-FIND")
            if code in (0xFF00, 0xFF01):
                if ident is not None:
                    out.append(match_dict(ident, level))
                state.progress(0.5, f"{len(out)} match(es)")
            elif code != 0:
                raise RemoteRefused(f"{node.describe()} refused the C-FIND (status 0x{code:04X})")
    state.progress(1.0, f"{len(out)} match(es)")
    return out


def _retrieve_request(
    study_uid: str, series_uid: str | None, calling_aet: str, timeout: float, model: str
) -> tuple[Any, Any]:
    """The identifier of a C-GET / C-MOVE (study or series level) and an AE proposing
    the query/retrieve ``model``."""
    ident = _retrieve_identifier(study_uid, series_uid)
    ae = _make_ae(calling_aet, timeout)
    ae.add_requested_context(model)
    return ident, ae


def _retrieve_identifier(study_uid: str, series_uid: str | None) -> Any:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.StudyInstanceUID = check_uid(study_uid, "study UID")
    if series_uid:
        ds.QueryRetrieveLevel = "SERIES"
        ds.SeriesInstanceUID = check_uid(series_uid, "series UID")
    else:
        ds.QueryRetrieveLevel = "STUDY"
    return ds


def _sub_ops(status: Any) -> dict[str, int]:
    out = {}
    for key, name in (
        ("NumberOfRemainingSuboperations", "remaining"),
        ("NumberOfCompletedSuboperations", "completed"),
        ("NumberOfFailedSuboperations", "failed"),
        ("NumberOfWarningSuboperations", "warning"),
    ):
        value = getattr(status, key, None)
        out[name] = int(value) if value not in (None, "") else 0
    return out


def _final_response(
    responses: Iterable[tuple[Any, Any]], node: Node, op: str, verb: str, state: TaskState
) -> tuple[int, dict[str, int]] | None:
    """Walk the responses of a C-GET or C-MOVE (``op``): pending ones report progress
    ("``verb`` done/total"); returns the last final one's status and sub-operation counts
    (None when there was none). No answer raises :class:`Unreachable`."""
    final = None
    for status, _ident in responses:
        code = _status(status)
        if code == -1:
            raise Unreachable(f"{node.describe()} stopped answering the {op}")
        ops = _sub_ops(status)
        if code in (0xFF00, 0xFF01):
            done = ops["completed"] + ops["failed"] + ops["warning"]
            total = done + ops["remaining"]
            state.progress(done / max(1, total), f"{verb} {done}/{total}")
            continue
        final = (code, ops)
    return final


def get(
    node: Node,
    study_uid: str,
    series_uid: str | None = None,
    calling_aet: str = DEFAULT_CALLING_AET,
    timeout: float = DEFAULT_TIMEOUT,
    db_path: str | None = None,
    store_dir: str | None = None,
    state: TaskState | None = None,
    retries: int = 0,
    max_pdu: int = 1024 * 1024,
) -> dict[str, Any]:
    """C-GET a study (or one series) into the store and the study database.

    Returns ``{"stored", "failed", "warning", "completed", "paths"}``; ``stored`` counts
    instances written and indexed here. Cancel aborts the association; instances
    already stored stay (whole files only)."""
    from pynetdicom import build_role, evt

    from medview.net.fastpath import serve_stores
    from medview.net.receiver import make_store_handler, make_store_service
    from medview.net.store import Retrieval

    state = ensure_state(state)
    ident, ae = _retrieve_request(study_uid, series_uid, calling_aet, timeout, STUDY_ROOT_GET)
    ae.maximum_pdu_size = max_pdu
    roles: dict[str, Any] = {}
    for sop_class, ts in get_storage_contexts():
        ae.add_requested_context(sop_class, ts)
        roles.setdefault(sop_class, build_role(sop_class, scp_role=True))
    counters: dict[str, int] = {}
    final: dict[str, int] = {}
    with Retrieval(store_dir, db_path) as got:
        handler = make_store_handler(got.store, got.submit, counters)
        # the instances are served without pynetdicom's DIMSE layer (the handler serves
        # any the fast path leaves to pynetdicom)
        service = make_store_service(
            got.store, got.submit, counters, max_pdu, got.store.max_instance_bytes
        )
        serve_stores(ae, service)
        with _association(
            ae,
            node,
            retries,
            ext_neg=list(roles.values()),
            evt_handlers=[(evt.EVT_C_STORE, handler)],
        ) as assoc:
            responses = assoc.send_c_get(ident, STUDY_ROOT_GET)
            last = _final_response(responses, node, "C-GET", "retrieved", state)
            if last is not None:
                code, final = last
                if code not in (0x0000, 0xB000) and not counters.get("stored"):
                    raise RemoteRefused(
                        f"{node.describe()} refused the C-GET (status 0x{code:04X})"
                    )
        got.rejected = counters.get("rejected", 0)
    return got.summary(
        completed=final.get("completed", 0),
        failed=final.get("failed", 0),
        warning=final.get("warning", 0),
    )


def move(
    node: Node,
    study_uid: str,
    dest_aet: str,
    series_uid: str | None = None,
    calling_aet: str = DEFAULT_CALLING_AET,
    timeout: float = DEFAULT_TIMEOUT,
    state: TaskState | None = None,
    retries: int = 0,
) -> dict[str, int]:
    """C-MOVE a study (or series) to ``dest_aet`` (normally our own storage SCP, which
    the remote must know by that AE title). Returns the final sub-operation counts."""
    state = ensure_state(state)
    dest_aet = check_aet(dest_aet, "destination AE title")
    ident, ae = _retrieve_request(study_uid, series_uid, calling_aet, timeout, STUDY_ROOT_MOVE)
    final: dict[str, int] = {}
    with _association(ae, node, retries) as assoc:
        responses = assoc.send_c_move(ident, dest_aet, STUDY_ROOT_MOVE)
        last = _final_response(responses, node, "C-MOVE", "moved", state)
        if last is not None:
            code, ops = last
            final = ops | {"status": code}
            if code == 0xA801:
                raise RemoteRefused(f"{node.describe()} does not know the destination {dest_aet}")
            if code not in (0x0000, 0xB000):
                raise RemoteRefused(f"{node.describe()} refused the C-MOVE (status 0x{code:04X})")
    return final


# -- C-STORE SCU --------------------------------------------------------------------


def collect_files(paths: Iterable[str]) -> list[str]:
    """Files under ``paths`` (folders recursively, hidden files skipped), sorted."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise BadRequest("no such file or folder", p)
    return out


def _read_for_send(path: str, header_only: bool) -> Any:
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=header_only)
    except Exception as exc:
        raise BadRequest(f"not a DICOM file ({type(exc).__name__})", path) from None
    meta = getattr(ds, "file_meta", None)
    # some anonymisers leave the UIDs only in the file meta: fill them from there
    if not ds.get("SOPClassUID") and meta is not None and meta.get("MediaStorageSOPClassUID"):
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
    if not ds.get("SOPInstanceUID") and meta is not None and meta.get("MediaStorageSOPInstanceUID"):
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    if not ds.get("SOPClassUID") or not ds.get("SOPInstanceUID"):
        raise BadRequest("no SOP Class/Instance UID: cannot be sent", path)
    return ds


def send(
    node: Node,
    paths: Iterable[str],
    calling_aet: str = DEFAULT_CALLING_AET,
    timeout: float = DEFAULT_TIMEOUT,
    state: TaskState | None = None,
    retries: int = 0,
) -> dict[str, Any]:
    """C-STORE files to ``node``. Each instance goes in its own transfer syntax when the
    remote accepts it, else decompressed to Explicit VR Little Endian.

    Returns ``{"sent", "failed", "warning", "errors": [one line per failure]}``."""
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    state = ensure_state(state)
    files = collect_files(paths)
    if not files:
        raise BadRequest("nothing to send: no files")
    headers: list[tuple[str, str, str]] = []
    errors: list[str] = []
    for n, f in enumerate(files):
        try:
            ds = _read_for_send(f, header_only=True)
        except BadRequest as exc:
            errors.append(str(exc))
            continue
        ts = str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))
        headers.append((f, str(ds.SOPClassUID), ts))
        if n % 32 == 0:
            state.progress(0.05 * n / len(files), "reading headers")
    if not headers:
        raise BadRequest(f"nothing to send: {errors[0] if errors else 'no DICOM files'}")
    ae = _make_ae(calling_aet, timeout)
    # one native context per SOP class, plus one per (class, compressed syntax) found, so
    # the remote accepts files as they are rather than choosing a native syntax for all
    native = [str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)]
    wanted: dict[tuple[str, str], list[str]] = {}
    for _f, sop_class, ts in headers:
        wanted.setdefault((sop_class, "native"), native)
        if ts not in native:
            wanted.setdefault((sop_class, ts), [ts])
    if len(wanted) > 128:
        raise BadRequest(f"{len(wanted)} SOP class/encoding pairs: send them in smaller groups")
    for (sop_class, _), tss in wanted.items():
        ae.add_requested_context(sop_class, tss)
    sent = warned = 0
    with _association(ae, node, retries) as assoc:
        accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        for n, (f, sop_class, ts) in enumerate(headers):
            state.progress(0.05 + 0.95 * n / len(headers), f"sending {n + 1}/{len(headers)}")
            if not any(cx[0] == sop_class for cx in accepted):
                errors.append(f"{f}: {node.describe()} does not accept this SOP class")
                continue
            ds = _read_for_send(f, header_only=False)
            if (sop_class, ts) not in accepted:
                try:
                    if ds.file_meta.TransferSyntaxUID.is_compressed:
                        ds.decompress(generate_instance_uid=False)
                except Exception as exc:
                    errors.append(f"{f}: cannot decompress for sending ({one_line(exc)})")
                    continue
            try:
                status = assoc.send_c_store(ds)
            except (ValueError, AttributeError) as exc:
                errors.append(f"{f}: {one_line(exc)}")
                continue
            code = _status(status)
            if code == -1:
                raise Unreachable(f"{node.describe()} stopped answering during C-STORE")
            if code == 0:
                sent += 1
            elif code in (0xB000, 0xB006, 0xB007):
                sent += 1
                warned += 1
            else:
                errors.append(f"{f}: refused with status 0x{code:04X}")
    state.progress(1.0, f"sent {sent}")
    return {"sent": sent, "failed": len(errors), "warning": warned, "errors": errors}
