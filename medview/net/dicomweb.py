"""DICOMweb client operations (dicomweb-client): QIDO-RS, WADO-RS and STOW-RS.

The same shape as :mod:`medview.net.dimse`: ``echo``, ``find``, ``get``, ``send``, taking
a :class:`~medview.net.nodes.Node` with a ``url``. HTTPS works through ``requests``
(system certificate store, or ``MEDVIEW_CA_BUNDLE`` for a clinic's own CA).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable
from typing import Any

from medview.errors import one_line
from medview.net.common import (
    DEFAULT_TIMEOUT,
    BadRequest,
    RemoteRefused,
    Unreachable,
    check_uid,
)
from medview.net.dimse import _KEYS, LEVELS, collect_files, match_dict, match_keys
from medview.net.nodes import Node
from medview.tasks import TaskState, ensure_state


def _client(node: Node, timeout: float) -> Any:
    import requests
    from dicomweb_client.api import DICOMwebClient

    node.validate()
    if not node.is_dicomweb:
        raise BadRequest("this node has no DICOMweb URL (use --dicomweb URL)")
    session = requests.Session()
    bundle = os.environ.get("MEDVIEW_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    client = DICOMwebClient(url=node.url.rstrip("/"), session=session, timeout=timeout)
    # dicomweb-client retries every failed request 5 times with exponential back-off by
    # default (30 s for a refused port, whatever the timeout): fail at once, like DIMSE;
    # the caller's retry policy decides (--retries for associations, the user otherwise)
    client.set_http_retry_params(retry=False)
    return client


def _call(node: Node, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
    """Run a client call, turning requests' exceptions into our one-line errors."""
    import requests

    try:
        return fn(*args, **kw)
    except requests.exceptions.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else 0
        raise RemoteRefused(f"{node.url} refused the {what} (HTTP {code})") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        kind = "timed out" if isinstance(exc, requests.exceptions.Timeout) else "is unreachable"
        raise Unreachable(f"{node.url} {kind} ({what})") from None
    except requests.exceptions.RequestException as exc:
        raise Unreachable(f"{node.url}: {what} failed ({one_line(exc)[:120]})") from None


def echo(node: Node, timeout: float = DEFAULT_TIMEOUT, **_: Any) -> dict[str, Any]:
    """A QIDO-RS study search with limit 1: the service answers and understands QIDO."""
    client = _client(node, timeout)
    t0 = time.perf_counter()
    _call(node, "QIDO-RS query", client.search_for_studies, limit=1)
    return {"node": node.url, "status": 0, "ms": round(1000 * (time.perf_counter() - t0), 1)}


def _dataset(item: dict[str, Any]) -> Any:
    from pydicom.dataset import Dataset

    return Dataset.from_json(item)


def find(
    node: Node,
    level: str = "study",
    timeout: float = DEFAULT_TIMEOUT,
    state: TaskState | None = None,
    patient_id: str | None = None,
    patient_name: str | None = None,
    study_date: str | None = None,
    modality: str | None = None,
    study_uid: str | None = None,
    accession: str | None = None,
    series_uid: str | None = None,
    **_: Any,
) -> list[dict[str, Any]]:
    """QIDO-RS search; the patient level groups the study matches by patient ID."""
    state = ensure_state(state)
    level = (level or "study").lower()
    if level not in LEVELS:
        raise BadRequest(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    # patients are found through their studies
    kind = "series" if level == "series" else "study"
    filters = match_keys(
        kind, patient_id, patient_name, study_date, modality, study_uid, accession, series_uid
    )
    client = _client(node, timeout)
    if kind == "series":
        fields = [k for k, _ in _KEYS["series"]] + ["StudyDate", "PatientName"]
        search = client.search_for_series
    else:
        fields = [k for k, _ in _KEYS["study"]] + ["PatientSex"]
        search = client.search_for_studies
    items = _call(
        node,
        f"QIDO-RS {kind} query",
        search,
        fields=fields,
        search_filters=filters,
        get_remaining=True,
    )
    out = [match_dict(_dataset(i), kind) for i in items]
    if level == "patient":
        patients: dict[str, dict[str, Any]] = {}
        for m in out:
            p = patients.setdefault(
                m.get("patient_id") or "",
                {
                    "level": "patient",
                    "patient_id": m.get("patient_id", ""),
                    "patient_name": m.get("patient_name", ""),
                    "birth_date": m.get("birth_date", ""),
                    "sex": m.get("PatientSex", ""),
                    "studies": 0,
                },
            )
            p["studies"] += 1
        out = list(patients.values())
    state.progress(1.0, f"{len(out)} match(es)")
    return out


def get(
    node: Node,
    study_uid: str,
    series_uid: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    db_path: str | None = None,
    store_dir: str | None = None,
    state: TaskState | None = None,
    **_: Any,
) -> dict[str, Any]:
    """WADO-RS retrieve of a study (or series) in its stored transfer syntax, into the
    store and the study database. Returns the same dict as :func:`medview.net.dimse.get`."""
    import pydicom

    from medview.net.common import log
    from medview.net.store import Rejected, Retrieval

    state = ensure_state(state)
    study_uid = check_uid(study_uid, "study UID")
    client = _client(node, timeout)
    # how many to expect, for progress (one QIDO; not fatal when it fails)
    try:
        total = len(
            client.search_for_instances(
                study_instance_uid=study_uid,
                search_filters={"SeriesInstanceUID": series_uid} if series_uid else None,
                get_remaining=True,
            )
        )
    except Exception:
        total = 0
    media = (("application/dicom", "*"),)
    if series_uid:
        series_uid = check_uid(series_uid, "series UID")
        it = _call(
            node, "WADO-RS retrieve", client.iter_series, study_uid, series_uid, media_types=media
        )
    else:
        it = _call(node, "WADO-RS retrieve", client.iter_study, study_uid, media_types=media)
    n = 0
    with Retrieval(store_dir, db_path) as got:
        while True:
            state.check()
            try:
                ds = _call(node, "WADO-RS retrieve", next, it)
            except StopIteration:
                break
            n += 1
            buf = io.BytesIO()
            pydicom.dcmwrite(buf, ds, enforce_file_format=True)
            try:
                a = got.store.accept(
                    [buf.getvalue()], str(ds.SOPClassUID), str(ds.SOPInstanceUID), node.url
                )
            except Rejected as exc:
                got.rejected += 1
                log.warning("refused instance from %s: %s", node.url, exc.reason)
                continue
            got.submit(a)
            state.progress(n / total if total else 0.5, f"retrieved {n}/{total or '?'}")
    if n == 0:
        raise RemoteRefused(f"{node.url} returned no instances for study {study_uid}")
    return got.summary(completed=n, failed=0, warning=0)


def send(
    node: Node,
    paths: Iterable[str],
    timeout: float = DEFAULT_TIMEOUT,
    state: TaskState | None = None,
    batch: int = 16,
    **_: Any,
) -> dict[str, Any]:
    """STOW-RS the files in batches of ``batch`` instances."""
    from medview.net.dimse import _read_for_send

    state = ensure_state(state)
    files = collect_files(paths)
    if not files:
        raise BadRequest("nothing to send: no files")
    client = _client(node, timeout)
    errors: list[str] = []
    sent = 0
    datasets: list[Any] = []
    names: list[str] = []

    def flush() -> None:
        nonlocal sent
        if not datasets:
            return
        result = _call(node, "STOW-RS store", client.store_instances, datasets)
        failed = result.get("FailedSOPSequence", []) if result is not None else []
        for item in failed:
            errors.append(
                f"{item.get('ReferencedSOPInstanceUID', '?')}: refused "
                f"(failure reason {item.get('FailureReason', '?')})"
            )
        sent += len(datasets) - len(failed)
        datasets.clear()
        names.clear()

    for n, f in enumerate(files):
        state.progress(n / len(files), f"sending {n + 1}/{len(files)}")
        try:
            datasets.append(_read_for_send(f, header_only=False))
            names.append(f)
        except BadRequest as exc:
            errors.append(str(exc))
        if len(datasets) >= batch:
            flush()
    flush()
    if not sent and not errors:
        raise BadRequest("nothing to send: no DICOM files")
    state.progress(1.0, f"sent {sent}")
    return {"sent": sent, "failed": len(errors), "warning": 0, "errors": errors}
