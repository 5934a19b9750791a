"""Event-driven reactors for pynetdicom associations (receive at socket speed).

pynetdicom 3.0 runs two polling loops per association: the DUL thread checks the socket
and its queues, and the association thread its message queue, each sleeping 1 ms between
empty checks (``time.sleep(0.001)``). A C-STORE crosses them three times (PDU read,
message handed to the handler, response sent), and on a loaded machine each 1 ms sleep
lasts several milliseconds: profiles of ``medview receive`` showed 80 % of the wall time
of a 300-instance push spent in these sleeps (docs/net.md).

:func:`install` replaces the two loops, for the associations of AEs marked with
:func:`make_event_driven` only (every other AE keeps pynetdicom's own loops), by loops
that block until there is work: the DUL thread in ``select()`` on the socket and a
wake-up pipe written when a primitive is queued for sending; the association thread on
an event set by the DUL thread after each state-machine action. They keep pynetdicom's
order of checks and states; timeouts (ARTIM, idle, kill) are checked at least every
:data:`TICK_S`. The DUL also reads PDUs with ``recv_into`` of the whole remaining length
instead of 4 KiB ``recv`` calls. Needs pynetdicom 3.x; with another version whose
internals differ, :func:`install` leaves pynetdicom alone (and the polling loops run).
"""

from __future__ import annotations

import logging
import os
import queue
import select
import threading
from typing import Any

from medview.net import fastpath

TICK_S = 0.02  # longest wait between checks of timers and kill flags
MAX_AHEAD = 64 * 1024 * 1024  # the most bytes allocated before they arrive (one PDU)
_FLAG = "_medview_event_driven"
_installed: list[bool] = []
_lock = threading.Lock()

LOGGER = logging.getLogger("pynetdicom.dul")


def make_event_driven(ae: Any) -> Any:
    """Mark ``ae`` (a pynetdicom AE) so its associations use the event-driven loops, and
    install them (once per process). Returns ``ae``."""
    if install():
        setattr(ae, _FLAG, True)
    return ae


def _marked(assoc: Any) -> bool:
    return bool(getattr(getattr(assoc, "ae", None), _FLAG, False))


def install() -> bool:
    """Install the dispatching loops on pynetdicom's classes (idempotent). False when
    this pynetdicom lacks the internals they use (nothing is changed then)."""
    with _lock:
        if _installed:
            return _installed[0]
        try:
            from pynetdicom.association import Association
            from pynetdicom.dul import DULServiceProvider
        except ImportError:
            _installed.append(False)
            return False
        needed_dul = (
            "_process_recv_primitive",
            "_is_transport_event",
            "_read_pdu_data",
            "_decode_pdu",
        )
        ok = all(hasattr(DULServiceProvider, n) for n in needed_dul + ("run_reactor",))
        ok = ok and all(hasattr(Association, n) for n in ("_run_reactor", "_serve_request"))
        if ok:
            _patch(DULServiceProvider, Association)
        _installed.append(ok)
        return ok


def _patch(dul_class: Any, assoc_class: Any) -> None:
    polling_dul = dul_class.run_reactor
    polling_assoc = assoc_class._run_reactor

    def run_reactor(self: Any) -> None:
        if _marked(self.assoc):
            _dul_loop(self)
        else:
            polling_dul(self)

    def _run_reactor(self: Any) -> None:
        if _marked(self):
            _assoc_loop(self)
        else:
            polling_assoc(self)

    run_reactor.__doc__ = polling_dul.__doc__
    _run_reactor.__doc__ = polling_assoc.__doc__
    dul_class.run_reactor = run_reactor
    assoc_class._run_reactor = _run_reactor


def _assoc_event(assoc: Any) -> threading.Event:
    """The event the DUL thread sets when it has handed the association something."""
    ev: threading.Event = assoc.__dict__.setdefault("_medview_wake", threading.Event())
    return ev


class _Waker:
    """A non-blocking pipe: ``wake()`` from any thread ends a ``select`` on ``fd``."""

    def __init__(self) -> None:
        self.fd, self._w = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._w, False)
        self._closed = False

    def wake(self) -> None:
        if self._closed:
            return
        try:
            os.write(self._w, b"x")
        except (BlockingIOError, OSError):  # full pipe: a wake-up is pending anyway
            pass

    def drain(self) -> None:
        try:
            while os.read(self.fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        self._closed = True
        for fd in (self.fd, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


def _fast_recv(assoc_socket: Any) -> Any:
    """``AssociationSocket.recv`` reading straight into one buffer of the wanted size."""

    def recv(nr_bytes: int) -> bytearray:
        sock = assoc_socket.socket
        if nr_bytes > MAX_AHEAD:  # a length from the peer: memory only for what arrives
            grown = bytearray()
            while len(grown) < nr_bytes:
                chunk = sock.recv(min(nr_bytes - len(grown), MAX_AHEAD))
                if not chunk:
                    break
                grown += chunk
            return grown
        buf = bytearray(nr_bytes)
        view = memoryview(buf)
        got = 0
        while got < nr_bytes:
            n = sock.recv_into(view[got:], nr_bytes - got)
            if not n:  # connection closed: what was read so far, as pynetdicom does
                del view
                return buf[:got]
            got += n
        del view
        return buf

    return recv


def _hook_wakeups(dul: Any, waker: _Waker) -> None:
    """Wake the DUL loop when a primitive is queued for sending or it is told to stop."""
    q = dul.to_provider_queue
    put = q.put

    def put_and_wake(item: Any, block: bool = True, timeout: float | None = None) -> None:
        put(item, block, timeout)
        if threading.get_ident() != dul.ident:  # the DUL itself checks its queue next
            waker.wake()

    q.put = put_and_wake
    for name in ("kill_dul", "stop_dul"):
        original = getattr(dul, name)

        def wrapper(*args: Any, _original: Any = original) -> Any:
            result = _original(*args)
            waker.wake()
            return result

        setattr(dul, name, wrapper)


def _wait(dul: Any, waker: _Waker) -> None:
    """Block until the socket has data, a primitive is queued, or TICK_S passes."""
    sock = dul.socket
    raw = getattr(sock, "socket", None) if sock is not None else None
    fds: list[Any] = [waker.fd]
    if raw is not None and getattr(sock, "_is_connected", False):
        pending = getattr(raw, "pending", None)  # TLS: decrypted bytes select cannot see
        if pending is not None and pending():
            return
        fds.append(raw)
    try:
        select.select(fds, [], [], TICK_S)
    except (OSError, ValueError):  # socket closed under us: the next check handles it
        pass
    waker.drain()


def _serve_lock(assoc: Any) -> Any:
    lock = assoc.__dict__.setdefault("_medview_serve_lock", threading.Lock())
    return lock


def serve_waiting(assoc: Any) -> bool:
    """Serve the complete DIMSE requests waiting for ``assoc``, one at a time under the
    association's lock (the DUL and the association thread both call this; a request is
    served once, in arrival order). True when one or more were served."""
    served = False
    while True:
        with _serve_lock(assoc):
            context_id, msg = assoc.dimse.get_msg(block=False)
            if not msg:
                return served
            assoc._serve_request(msg, context_id)
            served = True


def _serve_inline(assoc: Any) -> bool:
    """Serve waiting requests in the calling (DUL) thread, saving the hand-over to the
    association thread and back. False (the association thread serves them) until the
    association thread has finished negotiating."""
    if not assoc.is_established:
        return False
    blocking_abort = assoc.abort
    # as in an event handler: an abort queues the A-ABORT and returns (a blocking one
    # would wait for this very thread to stop)
    assoc.abort = assoc._abort_nonblocking
    try:
        serve_waiting(assoc)
        return True
    finally:
        assoc.abort = blocking_abort


def _unbind_log_handlers(assoc: Any) -> None:
    """Unbind pynetdicom's standard logging handlers (PDU and DIMSE message received and
    sent) from one of medview's associations: they describe every PDU and message in text
    (UID names, field lists) whether or not the log shows it (0.2 ms a C-STORE for the
    received message's handler alone in a cProfile run; not measured separately without);
    medview logs its own one-line messages and silences pynetdicom's logger."""
    from pynetdicom import _handlers, evt

    for event, handler in (
        (evt.EVT_PDU_RECV, _handlers.standard_pdu_recv_handler),
        (evt.EVT_PDU_SENT, _handlers.standard_pdu_sent_handler),
        (evt.EVT_DIMSE_RECV, _handlers.standard_dimse_recv_handler),
        (evt.EVT_DIMSE_SENT, _handlers.standard_dimse_sent_handler),
    ):
        try:
            assoc.unbind(event, handler)
        except Exception:  # noqa: S110 - not bound, or another pynetdicom: keep them
            pass


def _dul_loop(dul: Any) -> None:
    """pynetdicom's DUL ``run_reactor`` without the 1 ms sleeps."""
    from pynetdicom.pdu import A_ABORT_RQ

    waker = _Waker()
    _hook_wakeups(dul, waker)
    _unbind_log_handlers(dul.assoc)
    assoc_wake = _assoc_event(dul.assoc)
    if dul.socket is not None:
        dul.socket.recv = _fast_recv(dul.socket)
    dul._idle_timer.start()
    # an acceptor's requests (C-STORE, C-ECHO) are served in this thread: no hand-over
    # to the association thread and back for each one
    inline = bool(dul.assoc.is_acceptor)
    # with a store service, C-STOREs are served without pynetdicom's DIMSE layer (an
    # acceptor's, and those of a C-GET a requestor asked for)
    reader = fastpath.reader_for(dul)
    transport_event = reader.transport_event if reader is not None else dul._is_transport_event
    try:
        while True:
            if not dul.assoc._dul_ready.is_set():
                dul.assoc._dul_ready.set()
            if dul._kill_thread:
                break
            if dul.artim_timer.expired:
                dul.event_queue.put("Evt18")
            try:
                if dul._process_recv_primitive():
                    pass
                elif transport_event():
                    dul._idle_timer.restart()
            except Exception as exc:  # as pynetdicom: abort, bypassing the state machine
                LOGGER.error("Exception in DUL.run(), aborting association")
                LOGGER.exception(exc)
                abort_pdu = A_ABORT_RQ()
                abort_pdu.source = 0x02
                abort_pdu.reason_diagnostic = 0x00
                dul.socket.send(abort_pdu.encode())
                dul.assoc.is_aborted = True
                dul.assoc.is_established = False
                dul.assoc._kill = True
                dul._kill_thread = True
                return
            try:
                event = dul.event_queue.get(block=False)
            except queue.Empty:
                _wait(dul, waker)
                continue
            try:
                dul.state_machine.do_action(event)
            except Exception as exc:  # e.g. a late response after an abort: end quietly
                LOGGER.error("association ended: %s", exc)
                dul.assoc.is_established = False
                dul.assoc._kill = True
                break
            if not (inline and _serve_inline(dul.assoc)):
                assoc_wake.set()
    finally:
        if reader is not None:
            reader.close()
        assoc_wake.set()
        waker.close()


def _assoc_loop(assoc: Any) -> None:
    """pynetdicom's ``Association._run_reactor`` (acceptor and requestor) without the
    1 ms sleep: it waits for the DUL thread's signal (or TICK_S)."""
    wake = _assoc_event(assoc)
    assoc._is_paused = False
    log = logging.getLogger("pynetdicom.assoc")
    from pynetdicom import evt

    busy = False
    while not assoc._kill:
        # paused while waiting: send_*() from another thread may proceed at once
        assoc._is_paused = True
        if not busy:
            wake.wait(TICK_S)
            wake.clear()
        assoc._reactor_checkpoint.wait()
        assoc._is_paused = False
        if assoc._kill:
            break
        if not assoc._reactor_checkpoint.is_set():
            # paused again between the wait and the flag (a send_*() saw the flag still
            # set): its response must not be taken from the queue here
            busy = False
            continue
        # normally the DUL thread has served an acceptor's requests already; this
        # catches those that arrived while negotiation was finishing
        busy = serve_waiting(assoc)
        if assoc.is_established and assoc.acse.is_release_requested():
            assoc.acse.send_release(is_response=True)
            log.info("Association Released")
            assoc.is_released = True
            assoc.is_established = False
            evt.trigger(assoc, evt.EVT_RELEASED, {})
            assoc.kill()
            return
        if assoc.acse.is_aborted():
            p_abort = assoc.acse.is_aborted("a-p-abort")
            log.info("Association Aborted" + (" (A-P-ABORT)" if p_abort else ""))
            assoc.dul.receive_pdu(wait=False)  # so EVT_ACSE_RECV fires
            assoc.is_aborted = True
            assoc.is_established = False
            evt.trigger(assoc, evt.EVT_ABORTED, {})
            assoc.kill()
            return
        if not assoc.dul.is_alive():
            assoc.kill()
            return
        if assoc.dul.idle_timer_expired():
            log.error("Network timeout reached")
            if assoc.network_timeout_response == "A-RELEASE":
                assoc._is_paused = True
                assoc._reactor_checkpoint.wait()
                assoc.release()
                assoc._is_paused = False
            else:
                assoc.abort()
            assoc.kill()
            return
