"""A storage SCP (C-STORE and C-ECHO) that files what it receives into the study store.

>>> r = Receiver(ReceiverConfig(port=11112, aet="MEDVIEW"), on_arrival=print).start()
>>> ...            # arrivals are reported from the indexer thread
>>> r.stop()       # finishes the instances in flight, indexes them, then returns

Security on an untrusted LAN: binds to loopback unless ``host`` says otherwise; with
``allow_aets`` only those calling AE titles are associated (others get A-ASSOCIATE-RJ);
with ``allow_ips`` connections from other addresses are closed unread; storage is refused
(status A700) when free disk would fall below ``min_free_bytes``; PDUs over ``max_pdu``
(plus framing) and instances over ``max_instance_bytes`` abort the association; datasets
that do not parse, or whose UIDs are invalid, are refused (C000) with a one-line log and
never reach the store. Logs name AE titles, addresses and UIDs, never patient data.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from medview.errors import one_line
from medview.net.atomic import Chunk
from medview.net.common import (
    DEFAULT_CALLING_AET,
    VERIFICATION,
    BadRequest,
    accepted_transfer_syntaxes,
    check_aet,
    log,
)
from medview.net.fastpath import StoreRequest, StoreService, peer, pending_bytes, serve_stores
from medview.net.indexchild import ChildIndexer
from medview.net.reactor import make_event_driven
from medview.net.store import (
    DEFAULT_MAX_INSTANCE_BYTES,
    DEFAULT_MIN_FREE_BYTES,
    STATUS_CANNOT_UNDERSTAND,
    STATUS_OK,
    Arrival,
    Indexer,
    Rejected,
    StudyStore,
)
from medview.net.wire import MalformedDataset, file_meta_bytes

DEFAULT_PORT = 11112
DEFAULT_MAX_PDU = 1024 * 1024  # what we advertise; fewer, larger PDUs are much faster in Python


@dataclass
class ReceiverConfig:
    """Settings of the storage SCP (``port`` 0 picks a free one)."""

    port: int = DEFAULT_PORT
    aet: str = DEFAULT_CALLING_AET
    host: str = "127.0.0.1"
    allow_aets: list[str] = field(default_factory=list)
    allow_ips: list[str] = field(default_factory=list)
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    max_pdu: int = DEFAULT_MAX_PDU
    max_instance_bytes: int = DEFAULT_MAX_INSTANCE_BYTES
    db_path: str | None = None
    store_dir: str | None = None
    tls_cert: str | None = None  # PEM certificate + key enable DICOM TLS
    tls_key: str | None = None
    tls_ca: str | None = None  # when set, callers must present a certificate signed by it
    stop_grace_s: float = 5.0

    def validate(self) -> ReceiverConfig:
        check_aet(self.aet, "AE title")
        self.allow_aets = [check_aet(a, "allowed AE title") for a in self.allow_aets if a.strip()]
        if not 0 <= int(self.port) < 65536:
            raise BadRequest(f"port {self.port} is not between 1 and 65535")
        self.allow_ips = [check_ip(a) for a in self.allow_ips if a.strip()]
        self.tls_cert, self.tls_key, self.tls_ca = (
            (p or "").strip() or None for p in (self.tls_cert, self.tls_key, self.tls_ca)
        )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise BadRequest("TLS needs both a certificate and a key")
        if self.tls_ca and not self.tls_cert:
            raise BadRequest("a TLS CA needs the listener's own certificate and key too")
        for path, what in ((self.tls_cert, "certificate"), (self.tls_key, "key")):
            if path and not os.path.isfile(path):
                raise BadRequest(f"TLS {what} file not found", path)
        if self.tls_ca and not os.path.isfile(self.tls_ca):
            raise BadRequest("TLS CA file not found", self.tls_ca)
        return self


def check_ip(text: str) -> str:
    """An IPv4 or IPv6 address in its canonical form, or :class:`BadRequest`."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise BadRequest(f"allowed address {text.strip()[:60]!r} is not an IP address") from None


def server_ssl_context(cfg: ReceiverConfig) -> Any:
    """The TLS context of a listener (None without a certificate); :class:`BadRequest`
    with one line when the PEM files cannot be loaded."""
    if not cfg.tls_cert:
        return None
    import ssl

    try:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        if cfg.tls_ca:
            ctx.load_verify_locations(cfg.tls_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ValueError) as exc:
        path = cfg.tls_cert if isinstance(exc, OSError) else None
        raise BadRequest(f"cannot load the TLS certificate/key ({one_line(exc)})", path) from None
    return ctx


def make_store_handler(
    store: StudyStore,
    submit: Callable[[Arrival, Any], None],
    counters: dict[str, int] | None = None,
) -> Callable[[Any], int]:
    """An ``EVT_C_STORE`` handler writing into ``store`` and handing arrivals to ``submit``
    (used by the SCP and by C-GET, where the remote sends on our own association).
    ``submit(arrival, association)`` gets every stored instance."""
    counters = counters if counters is not None else {}

    def handler(event: Any) -> int:
        req = event.request
        return store_instance(
            store,
            submit,
            counters,
            event.assoc,
            str(req.AffectedSOPClassUID or ""),
            str(req.AffectedSOPInstanceUID or ""),
            str(event.context.transfer_syntax),
            [req.DataSet.getbuffer()],  # the received bytes, not a copy of them
        )

    return handler


def make_store_service(
    store: StudyStore,
    submit: Callable[[Arrival, Any], None],
    counters: dict[str, int],
    max_pdu: int = 0,
    max_instance: int = 0,
) -> StoreService:
    """The same as :func:`make_store_handler` for the fast path of an SCP's associations
    (:mod:`medview.net.fastpath`), with its size caps."""

    def store_request(assoc: Any, request: StoreRequest) -> int:
        return store_instance(
            store,
            submit,
            counters,
            assoc,
            request.sop_class,
            request.sop_uid,
            request.transfer_syntax,
            request.parts,  # views of the received PDUs
            request.written,
            request.head,  # the file meta begin() made, not made again
        )

    def begin(_assoc: Any, request: StoreRequest) -> int | None:
        try:
            request.head = file_meta_bytes(
                request.sop_class, request.sop_uid, request.transfer_syntax
            )
        except MalformedDataset:
            return None  # refused when it has arrived
        return store.begin(request.head)

    return StoreService(store_request, max_pdu, max_instance, begin)


def store_instance(
    store: StudyStore,
    submit: Callable[[Arrival, Any], None],
    counters: dict[str, int],
    assoc: Any,
    sop_class: str,
    sop_uid: str,
    ts: str,
    dataset: Sequence[Chunk],
    written: int | None = None,
    meta: bytes = b"",
) -> int:
    """Write one received instance (``dataset``: its fragments) into ``store`` and hand it
    to ``submit``; the C-STORE status (refusals are counted and logged in one line, never
    raised). ``written``: :meth:`StudyStore.begin`'s file, holding the instance already
    (closed here either way); ``meta``: its file meta, when already made."""
    calling = _calling_aet(assoc)
    try:
        try:
            meta = meta or file_meta_bytes(sop_class, sop_uid, ts)
        except MalformedDataset as exc:
            if written is not None:
                os.close(written)
            raise Rejected(STATUS_CANNOT_UNDERSTAND, str(exc)) from None
        arrival = store.accept([meta, *dataset], sop_class, sop_uid, calling, ts, written)
    except Rejected as exc:
        counters["rejected"] = counters.get("rejected", 0) + 1
        log.warning("refused instance %s from %s: %s", sop_uid[:64], calling, exc.reason)
        return exc.status
    except Exception as exc:  # disk full, permissions: refuse, keep listening
        counters["rejected"] = counters.get("rejected", 0) + 1
        log.error("could not store instance %s from %s: %s", sop_uid[:64], calling, one_line(exc))
        return 0xA700
    counters["stored"] = counters.get("stored", 0) + 1
    submit(arrival, assoc)
    return STATUS_OK


def _calling_aet(assoc: Any) -> str:
    try:
        return str(assoc.requestor.ae_title).strip()
    except Exception:
        return ""


def _server_class() -> type:
    """pynetdicom's threaded server that closes connections from addresses outside
    ``allow_ips`` (when set) before any DICOM is read."""
    from pynetdicom.transport import ThreadedAssociationServer

    class _Server(ThreadedAssociationServer):
        allow_ips: set[str] = set()

        def verify_request(self, request: Any, client_address: Any) -> bool:
            ip = str(client_address[0])
            if self.allow_ips and ip not in self.allow_ips:
                log.warning("refused connection from %s: address not in the allow list", ip)
                return False
            return True

    return _Server


def storage_contexts() -> list[tuple[str, list[str]]]:
    """(SOP class, transfer syntaxes) for every storage SOP class pynetdicom knows."""
    from pynetdicom import AllStoragePresentationContexts

    ts = list(accepted_transfer_syntaxes())
    return [
        (str(cx.abstract_syntax), ts)
        for cx in AllStoragePresentationContexts
        if cx.abstract_syntax is not None
    ]


class Receiver:
    """The storage SCP. ``on_arrival(Arrival)`` is called (from a worker thread) after each
    instance is stored and indexed; ``on_association_done(calling_aet, study_uids, n)`` when
    a sender releases or drops its association (a study push has completed)."""

    FILES_AHEAD = 8  # files made ahead for the next instances (StudyStore.make_ahead)
    INDEX_IN_CHILD = True  # index in a child process (medview.net.indexchild)
    FAST_PATH = True  # serve C-STORE without pynetdicom's DIMSE layer (medview.net.fastpath)

    def __init__(
        self,
        config: ReceiverConfig | None = None,
        on_arrival: Callable[[Arrival], None] | None = None,
        on_association_done: Callable[[str, set[str], int], None] | None = None,
    ) -> None:
        self.config = (config or ReceiverConfig()).validate()
        self.on_arrival = on_arrival
        self.on_association_done = on_association_done
        self.store = StudyStore(
            self.config.store_dir,
            min_free_bytes=self.config.min_free_bytes,
            max_instance_bytes=self.config.max_instance_bytes,
        )
        self.counters: dict[str, int] = {}
        indexer = ChildIndexer if self.INDEX_IN_CHILD else Indexer
        self._indexer = indexer(self.config.db_path, on_indexed=self._indexed)
        self._server: Any = None
        self._ae: Any = None
        self._assoc_info: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.port = 0

    # -- life cycle -------------------------------------------------------------
    def start(self) -> Receiver:
        """Bind and listen in background threads; raises :class:`BadRequest` when the port
        cannot be bound."""
        from pynetdicom import AE, evt
        from pynetdicom.events import EventHandlerType

        cfg = self.config
        self.store.clean_incoming()
        self.store.make_ahead(self.FILES_AHEAD)
        ae = make_event_driven(AE(ae_title=cfg.aet))
        if self.FAST_PATH:
            serve_stores(
                ae,
                make_store_service(
                    self.store, self._stored, self.counters, cfg.max_pdu, cfg.max_instance_bytes
                ),
            )
        ae.maximum_pdu_size = int(cfg.max_pdu)
        ae.maximum_associations = 16
        ae.network_timeout = 60
        ae.acse_timeout = 30
        ae.dimse_timeout = 60
        ae.require_called_aet = False
        if cfg.allow_aets:
            ae.require_calling_aet = list(cfg.allow_aets)
        ae.add_supported_context(VERIFICATION)
        for sop_class, ts in storage_contexts():
            ae.add_supported_context(sop_class, ts)
        handlers: list[EventHandlerType]
        handlers = [
            (evt.EVT_C_STORE, make_store_handler(self.store, self._stored, self.counters)),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, self._on_done),
            (evt.EVT_ABORTED, self._on_done),
            (evt.EVT_PDU_RECV, self._on_pdu),
        ]
        ssl_context = server_ssl_context(cfg)
        self._indexer.start()
        try:
            # a _server_class() instance, which has allow_ips
            server: Any = ae.make_server(
                (cfg.host, int(cfg.port)),
                evt_handlers=handlers,
                ssl_context=ssl_context,
                server_class=_server_class(),
            )
        except OSError as exc:
            self.store.close()
            self._indexer.stop()
            raise BadRequest(
                f"cannot listen on {cfg.host}:{cfg.port} ({exc.strerror or one_line(exc)})"
            ) from None
        server.allow_ips = set(cfg.allow_ips)
        # what AE.start_server(block=False) does, with our server class; shutdown() expects
        # the server in the AE's list
        ae._servers.append(server)
        threading.Thread(
            target=server.serve_forever, name="medview-net-listener", daemon=True
        ).start()
        self._server = server
        self._ae = ae
        self.port = int(self._server.server_address[1])
        log.info("listening on %s:%d as %s", cfg.host, self.port, cfg.aet)
        return self

    def stop(self) -> None:
        """Stop listening, let associations finish the instance in flight (up to
        ``stop_grace_s``), abort what remains, index everything stored, return."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.shutdown()  # no new connections
        deadline = time.monotonic() + self.config.stop_grace_s
        for assoc in list(server.active_associations):
            # a sender between instances is told to go away; one mid-instance gets the grace
            while assoc.is_alive() and time.monotonic() < deadline:
                if not self._busy(assoc):
                    break
                time.sleep(0.02)
            if assoc.is_alive():
                assoc.abort()
        for assoc in list(server.active_associations):
            assoc.join(5)
        self.store.close()
        self._indexer.stop()
        log.info(
            "stopped: %d stored, %d refused",
            self.counters.get("stored", 0),
            self.counters.get("rejected", 0),
        )

    def wait_ready(self, timeout: float | None = 60.0) -> bool:
        """Wait until the indexer can index (its process has started: 0.1 to 0.5 s after
        :meth:`start`); instances arriving before are stored and answered, and indexed
        once it is. False on timeout."""
        return self._indexer.ready.wait(timeout)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every stored instance so far is indexed and reported."""
        return self._indexer.flush(timeout)

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> Receiver:
        return self.start() if not self.running else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------
    def _info(self, assoc: Any) -> dict[str, Any]:
        with self._lock:
            return self._assoc_info.setdefault(
                id(assoc), {"bytes": 0, "studies": set(), "count": 0, "pending": 0}
            )

    def _pending(self, assoc: Any) -> int:
        """Bytes received of the instance in flight on ``assoc`` (0: between instances)."""
        return max(pending_bytes(assoc), self._info(assoc)["bytes"])

    def _busy(self, assoc: Any) -> bool:
        """An instance is partly received (P-DATA seen since the last stored one)."""
        return self._pending(assoc) > 0

    def receiving_bytes(self) -> int:
        """Bytes received so far of the instances in flight, over all associations."""
        server = self._server
        return sum(self._pending(a) for a in list(server.active_associations)) if server else 0

    def _stored(self, arrival: Arrival, assoc: Any) -> None:
        info = self._info(assoc)
        with self._lock:
            info["count"] += 1
            info["studies"].add(arrival.study_uid)
        self._indexer.submit(arrival)

    def _indexed(self, arrival: Arrival) -> None:
        if self.on_arrival is not None:
            self.on_arrival(arrival)

    def _on_rejected(self, event: Any) -> None:
        log.warning(
            "refused association from %s at %s: calling AE title not allowed",
            _calling_aet(event.assoc) or "?",
            peer(event.assoc),
        )

    def _on_pdu(self, event: Any) -> None:
        pdu = event.pdu
        items = getattr(pdu, "presentation_data_value_items", None)
        if items is None:
            return
        info = self._info(event.assoc)
        size = 0
        last = False
        for item in items:
            data = item.presentation_data_value
            size += len(data)
            # message control header: bit 0 command/data, bit 1 last fragment
            if data and (data[0] & 0x03) == 0x02:
                last = True
        if size > self.config.max_pdu + 64:
            log.warning("aborted association from %s: PDU over the size cap", peer(event.assoc))
            event.assoc.abort()
            return
        info["bytes"] = 0 if last else info["bytes"] + size
        if info["bytes"] > self.config.max_instance_bytes:
            log.warning(
                "aborted association from %s: instance over the size cap", peer(event.assoc)
            )
            event.assoc.abort()

    def _on_done(self, event: Any) -> None:
        self._indexer.now()  # the sender is done: index its last instances at once
        with self._lock:
            info = self._assoc_info.pop(id(event.assoc), None)
        if self.on_association_done is not None and info is not None:
            try:
                self.on_association_done(
                    _calling_aet(event.assoc), set(info["studies"]), info["count"]
                )
            except Exception as exc:
                log.error("association callback failed: %s", one_line(exc))
