"""C-STORE without pynetdicom's DIMSE layer: the storage SCP's, and a C-GET's.

pynetdicom handles each received C-STORE in Python objects at every step: the P-DATA-TF
PDU decoded into PDV item objects (the dataset copied out of the PDU), a DIMSE message
assembling the fragments, the command set parsed into a pydicom dataset, a request
primitive, the service class, the event handler, a response primitive encoded back
through pydicom, a P-DATA primitive queued for the DUL and encoded into a PDU. A bare
pynetdicom SCP that stores nothing is itself about as slow as dcmtk's ``storescp``
writing every file (docs/net.md), which leaves no time for medview's own work.

:class:`Reader` serves P-DATA-TF PDUs in the DUL thread of an established association
(``medview.net.reactor``) instead, the storage SCP's or one that requested a C-GET (whose
sub-operations arrive as C-STOREs on it): it splits the PDU into its presentation
data values (PS3.8 9.3.5, annex E), reads the command set of a C-STORE-RQ with
:func:`parse_command` (implicit VR little endian, PS3.7 6.3.1 and 9.3.1.1), hands the
dataset fragments (views of the received PDU, not copies) and the request to the
:class:`StoreService`'s ``store`` and sends the C-STORE-RSP it encodes with
:func:`store_response` (PS3.7 9.3.1.2). Everything else is handed to pynetdicom as
received, in order: other PDUs (release, abort), other messages (C-ECHO, N-...), and any
C-STORE-RQ this reader does not serve exactly as pynetdicom would (an unaccepted
context, a SOP class that is not a storage class of its context, a command set with an
element it does not expect, extended negotiation, a C-GET context without our SCP
role). The size caps are checked before a PDU is read into memory.

What pynetdicom's events would report for the messages served here is not reported
(``EVT_PDU_RECV``, ``EVT_DIMSE_RECV``, ``EVT_C_STORE``...): ``StoreService`` is the
hook. No library does this part (pynetdicom's DIMSE layer is what is replaced); it is
about 400 lines, tested against dcmtk ``storescu``, Orthanc's C-GET and pynetdicom's own
encoder and decoder.
"""

from __future__ import annotations

import os
import queue
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medview.net.atomic import write_all
from medview.net.common import log

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
NO_DATASET = 0x0101
P_DATA_TF = 0x04
# the most bytes of command set kept while its fragments arrive (a C-STORE-RQ's is ~200)
MAX_COMMAND_BYTES = 64 * 1024

# the command elements a C-STORE-RQ may have (PS3.7 table 9.3-1) and their VR class
_UI, _US, _UL, _AE = "UI", "US", "UL", "AE"
_RQ_ELEMENTS = {
    0x0000: _UL,  # Command Group Length
    0x0002: _UI,  # Affected SOP Class UID
    0x0100: _US,  # Command Field
    0x0110: _US,  # Message ID
    0x0700: _US,  # Priority
    0x0800: _US,  # Command Data Set Type
    0x1000: _UI,  # Affected SOP Instance UID
    0x1030: _AE,  # Move Originator Application Entity Title
    0x1031: _US,  # Move Originator Message ID
}
_REQUIRED = (0x0002, 0x0100, 0x0110, 0x0700, 0x0800, 0x1000)


@dataclass
class StoreRequest:
    """One received C-STORE-RQ with its dataset: ``parts`` are the dataset's fragments
    (views of the received PDUs, valid until the request is answered)."""

    context_id: int
    message_id: int
    sop_class: str
    sop_uid: str
    transfer_syntax: str
    priority: int = 0
    move_originator: str = ""
    parts: list[memoryview] = field(default_factory=list)
    size: int = 0
    # a file without a name the fragments are written to as they arrive (StoreService.begin)
    written: int | None = None
    head: bytes = b""  # what StoreService.begin wrote before the dataset (e.g. file meta)

    def discard(self) -> None:
        """Close the file the fragments went to (it vanishes, having no name)."""
        fd, self.written = self.written, None
        if fd is not None:
            os.close(fd)


@dataclass
class StoreService:
    """What an AE's fast path does: ``store(assoc, request)`` writes one instance and
    returns the C-STORE status (it must not raise; with ``begin``, the instance's bytes
    are in ``request.written`` already, so that writing overlaps receiving); ``max_pdu``
    and ``max_instance`` (bytes, 0 for none) abort an association whose PDU or instance
    is larger, with a one-line log naming the peer and the reason."""

    store: Callable[[Any, StoreRequest], int]
    max_pdu: int = 0
    max_instance: int = 0
    # a file for the request's fragments to be written to as they arrive, or None; the
    # request's ``written`` is then handed to ``store``, which owns it from then on
    begin: Callable[[Any, StoreRequest], int | None] | None = None


def parse_command(data: bytes) -> dict[int, Any] | None:
    """The elements of a C-STORE-RQ command set (implicit VR little endian), keyed by
    element number; None when it is anything else or not exactly well-formed (then
    pynetdicom decides what to do with it)."""
    out: dict[int, Any] = {}
    i, n = 0, len(data)
    while i < n:
        if n - i < 8:
            return None
        group, elem, length = struct.unpack_from("<HHL", data, i)
        i += 8
        vr = _RQ_ELEMENTS.get(elem)
        if group != 0 or vr is None or i + length > n or elem in out:
            return None
        value = data[i : i + length]
        i += length
        if vr == _US:
            if length != 2:
                return None
            out[elem] = value[0] | value[1] << 8
        elif vr == _UL:
            if length != 4:
                return None
            out[elem] = struct.unpack("<L", value)[0]
        else:
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                return None
            out[elem] = text.rstrip("\0 ") if vr == _UI else text.strip()
    if any(e not in out for e in _REQUIRED) or out[0x0100] != C_STORE_RQ:
        return None
    if 0x0000 in out and out[0x0000] != n - 12:  # the group length counts what follows it
        return None
    return out


def _element(elem: int, value: bytes) -> bytes:
    return struct.pack("<HHL", 0, elem, len(value)) + value


def _uid(text: str) -> bytes:
    raw = text.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def store_response(message_id: int, sop_class: str, sop_uid: str, status: int) -> bytes:
    """The command set of a C-STORE-RSP (PS3.7 9.3.1.2), implicit VR little endian, its
    elements in tag order as pynetdicom encodes them."""
    body = b"".join(
        (
            _element(0x0002, _uid(sop_class)),
            _element(0x0100, struct.pack("<H", C_STORE_RSP)),
            _element(0x0120, struct.pack("<H", message_id)),
            _element(0x0800, struct.pack("<H", NO_DATASET)),
            _element(0x0900, struct.pack("<H", status)),
            _element(0x1000, _uid(sop_uid)),
        )
    )
    return _element(0x0000, struct.pack("<L", len(body))) + body


def p_data_tf(context_id: int, command: bytes, max_length: int = 0) -> bytes:
    """P-DATA-TF PDUs carrying one command set as fragments (PS3.8 9.3.5, E.2), each PDU
    at most ``max_length`` bytes long (the peer's maximum; 0: no limit)."""
    room = len(command) if not max_length else max(max_length - 6, 1)
    out = []
    for start in range(0, len(command), room):
        frag = command[start : start + room]
        last = start + room >= len(command)
        pdv = struct.pack(">LBB", len(frag) + 2, context_id, 0x03 if last else 0x01) + frag
        out.append(struct.pack(">BBL", P_DATA_TF, 0, len(pdv)) + pdv)
    return b"".join(out)


def _storage_class(class_uid: str) -> bool:
    from pynetdicom.service_class import StorageServiceClass
    from pynetdicom.sop_class import uid_to_service_class

    return uid_to_service_class(class_uid) is StorageServiceClass


class Reader:
    """Reads the PDUs of one established association (the storage SCP's, or one that
    requested a C-GET) in its DUL thread (see the module docstring);
    :meth:`transport_event` stands for pynetdicom's ``_is_transport_event``."""

    def __init__(self, dul: Any, service: StoreService) -> None:
        self.dul = dul
        self.service = service
        self._command: list[bytes] = []
        self._command_size = 0
        self._command_context = -1
        self.request: StoreRequest | None = None  # the C-STORE being received
        self._contexts: dict[int, tuple[str, str] | None] = {}
        self.last_served = time.monotonic()
        if dul.assoc.is_requestor:
            _keep_waiting(dul.assoc, self)

    @property
    def pending(self) -> int:
        """Bytes received of the message in flight (0 between messages)."""
        return self.request.size if self.request is not None else self._command_size

    def transport_event(self) -> bool:
        """Read and act on one PDU when the socket has one; True when it did."""
        dul = self.dul
        if dul.state_machine.current_state != "Sta6" or not dul.assoc.is_established:
            return bool(dul._is_transport_event())
        sock = dul.socket
        if not (sock and sock.ready):
            return False
        self._read_pdu()
        return True

    # -- reading ------------------------------------------------------------------------
    def _read_pdu(self) -> None:
        dul = self.dul
        try:
            head = bytes(dul.socket.recv(6))
        except (OSError, TimeoutError):
            head = b""
        if len(head) < 6:
            dul.event_queue.put("Evt17")  # transport closed
            return
        kind, _, length = struct.unpack(">BBL", head)
        # (PDUs over the reactor's MAX_AHEAD are read as they come, not allocated first)
        if kind == P_DATA_TF and self.service.max_pdu and length > self.service.max_pdu + 64:
            self._abort("PDU over the size cap")
            return
        try:
            body = dul.socket.recv(length)
        except (OSError, TimeoutError):
            body = b""
        if len(body) != length:
            log.warning("association from %s closed mid-PDU", peer(dul.assoc))
            dul.event_queue.put("Evt17")
            return
        if kind != P_DATA_TF:
            self._hand_over(head + bytes(body))
            return
        self._p_data(head, body)

    def _p_data(self, head: bytes, body: bytearray) -> None:
        view = memoryview(body)
        n = len(body)
        i = 0
        passed: list[bytes | memoryview] = []  # PDV items for pynetdicom, in order
        while i < n:
            if n - i < 6:
                self._hand_over(head + bytes(body))  # malformed: pynetdicom's reason
                return
            length = struct.unpack_from(">L", body, i)[0]
            if length < 2 or i + 4 + length > n:
                self._hand_over(head + bytes(body))
                return
            context_id, control = body[i + 4], body[i + 5]
            item = view[i : i + 4 + length]
            fragment = view[i + 6 : i + 4 + length]
            i += 4 + length
            is_command, is_last = bool(control & 0x01), bool(control & 0x02)
            request = self.request
            if request is not None:
                if is_command or context_id != request.context_id:
                    self._abort("fragments of two messages interleaved")
                    return
                request.parts.append(fragment)
                request.size += len(fragment)
                if self.service.max_instance and request.size > self.service.max_instance:
                    self._abort("instance over the size cap")
                    return
                if request.written is not None:  # written while the next PDU comes
                    try:
                        write_all(request.written, [fragment])
                    except OSError:  # e.g. disk full: store() writes it whole, or refuses
                        request.discard()
                if is_last:
                    if passed:  # keep pynetdicom's messages in their order
                        self._hand_over_items(passed)
                        passed = []
                    self._complete()
                continue
            if not is_command:  # the dataset of a message pynetdicom serves
                passed.append(item)
                continue
            if self._command and context_id != self._command_context:
                self._abort("fragments of two messages interleaved")
                return
            self._command.append(bytes(fragment))
            self._command_context = context_id
            self._command_size += len(fragment)
            if self._command_size > MAX_COMMAND_BYTES:
                self._abort("command set over the size cap")
                return
            if is_last:
                command = b"".join(self._command)
                self._command, self._command_size = [], 0
                self.request = self._request(context_id, command)
                if self.request is None:  # not one of ours: pynetdicom serves it whole
                    passed.append(struct.pack(">LBB", len(command) + 2, context_id, 3) + command)
                elif self.service.begin is not None:
                    self.request.written = self.service.begin(self.dul.assoc, self.request)
        if passed:
            self._hand_over_items(passed)

    def _request(self, context_id: int, command: bytes) -> StoreRequest | None:
        """The C-STORE-RQ this reader serves, or None (pynetdicom serves the message)."""
        cx = self._context(context_id)
        if cx is None:
            return None
        fields = parse_command(command)
        if fields is None or fields[0x0800] == NO_DATASET or fields[0x0002] != cx[0]:
            return None
        return StoreRequest(
            context_id,
            fields[0x0110],
            fields[0x0002],
            fields[0x1000],
            cx[1],
            priority=fields[0x0700],
            move_originator=fields.get(0x1030, ""),
        )

    def _context(self, context_id: int) -> tuple[str, str] | None:
        """(abstract syntax, transfer syntax) of an accepted storage context, else None."""
        if context_id not in self._contexts:
            assoc = self.dul.assoc
            cx = assoc._accepted_cx.get(context_id)
            found = None
            if assoc.is_requestor:  # C-GET's sub-operations: our SCP role agreed
                ours = cx is not None and cx.as_scp is True
            else:  # as pynetdicom's _serve_request finds the service
                ours = not assoc.acceptor.accepted_common_extended and not _unrestricted()
            if (
                ours
                and cx is not None
                and cx.transfer_syntax
                and _storage_class(str(cx.abstract_syntax))
            ):
                found = (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
            self._contexts[context_id] = found
        return self._contexts[context_id]

    # -- answering ----------------------------------------------------------------------
    def _complete(self) -> None:
        request, self.request = self.request, None
        assert request is not None
        assoc = self.dul.assoc
        try:
            status = int(self.service.store(assoc, request))
        except Exception as exc:  # as pynetdicom: "exception in the handler"
            log.error("C-STORE handler failed: %s", type(exc).__name__)
            status = 0xC211
        request.written = None  # store() owned it
        request.parts.clear()
        self.last_served = time.monotonic()
        if not assoc.is_established or assoc._sent_release:
            return
        rsp = store_response(request.message_id, request.sop_class, request.sop_uid, status)
        max_length = int(getattr(_remote(assoc), "maximum_length", 0) or 0)
        self.dul.socket.send(p_data_tf(request.context_id, rsp, max_length))

    # -- handing over to pynetdicom -----------------------------------------------------
    def _hand_over_items(self, items: list[bytes | memoryview]) -> None:
        body = b"".join(items)
        self._hand_over(struct.pack(">BBL", P_DATA_TF, 0, len(body)) + body)

    def _hand_over(self, pdu: bytes) -> None:
        """What pynetdicom's ``_read_pdu_data`` does with a PDU it has read."""
        dul = self.dul
        try:
            decoded, event = dul._decode_pdu(bytearray(pdu))
        except Exception:
            log.warning("invalid PDU from %s", peer(dul.assoc))
            dul.event_queue.put("Evt19")
            return
        dul.event_queue.put(event)
        dul._recv_pdu.put(decoded)

    def _abort(self, reason: str) -> None:
        assoc = self.dul.assoc
        log.warning("aborted association from %s: %s", peer(assoc), reason)
        self.close()
        assoc._abort_nonblocking()

    def close(self) -> None:
        """Drop the message in flight (the association has ended or is aborted)."""
        if self.request is not None:
            self.request.discard()
        self.request = None
        self._command, self._command_size = [], 0


def _unrestricted() -> bool:
    from pynetdicom import _config

    return bool(getattr(_config, "UNRESTRICTED_STORAGE_SERVICE", False))


def _remote(assoc: Any) -> Any:
    """The other end's service user (address, maximum PDU length)."""
    return assoc.acceptor if assoc.is_requestor else assoc.requestor


def peer(assoc: Any) -> str:
    """The other end's address, for logs ("?" when unknown)."""
    try:
        return f"{_remote(assoc).address}"
    except Exception:
        return "?"


def _keep_waiting(assoc: Any, reader: Reader) -> None:
    """On a requestor (C-GET), pynetdicom waits for the next C-GET response at most the
    DIMSE timeout, counting C-STOREs it serves itself as responses; let the C-STOREs the
    fast path serves count too (a PACS need not send a pending response after each)."""
    q = assoc.dimse.msg_queue
    get = q.get

    def get_waiting(block: bool = True, timeout: float | None = None) -> Any:
        if not block or timeout is None:
            return get(block, timeout)
        wait = timeout
        while True:
            try:
                return get(True, wait)
            except queue.Empty:
                idle = time.monotonic() - reader.last_served
                if idle >= timeout or not assoc.is_established:
                    raise
                wait = timeout - idle

    q.get = get_waiting


def reader_for(dul: Any) -> Reader | None:
    """The fast path for ``dul``'s association: a :class:`Reader` when its AE has a
    :class:`StoreService` (:func:`serve_stores`), else None."""
    assoc = dul.assoc
    service = getattr(getattr(assoc, "ae", None), "_medview_store_service", None)
    if service is None or not hasattr(assoc, "_accepted_cx"):
        return None
    reader = Reader(dul, service)
    assoc._medview_reader = reader
    return reader


def serve_stores(ae: Any, service: StoreService) -> Any:
    """Have ``ae``'s event-driven associations serve C-STORE with ``service``
    (:class:`Reader`): as a storage SCP, and the sub-operations of a C-GET it requests.
    Returns ``ae``."""
    ae._medview_store_service = service
    return ae


def pending_bytes(assoc: Any) -> int:
    """Bytes the fast path of ``assoc`` has received of the message in flight."""
    reader = getattr(assoc, "_medview_reader", None)
    return reader.pending if reader is not None else 0
