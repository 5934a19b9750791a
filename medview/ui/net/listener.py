"""The GUI's storage SCP: a :class:`~medview.net.receiver.Receiver` started from the settings,
its arrivals handed to the GUI thread through a queued signal, in batches.

Settings (:mod:`medview.ui.settings`, key ``net/listener``, a plain object):
``enabled`` (default off), ``port`` (11112), ``aet`` (``MEDVIEW``), ``allow`` (calling AE
titles; empty = anyone), ``allow_ip`` (source IP addresses; empty = any), ``network``
(listen on the network; default off = loopback only), ``bind`` (the interface address
used when ``network`` is on; default ``0.0.0.0``) and ``tls_cert``, ``tls_key``,
``tls_ca`` (PEM paths: a certificate and key turn DICOM TLS on; a CA makes senders
present a certificate it signed; empty = plain DICOM).

The receiver's callbacks run on its indexer and association threads. They only append to
a locked list and, when that list was empty, emit one signal; Qt queues it to the GUI
thread, where a single-shot timer gathers what arrives within :data:`BATCH_MS` and emits
``arrived(list)`` once. The GUI thread never waits for the network or the database.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from medview.ui import settings as user_settings
from medview.ui.workers import TaskSlot

log = logging.getLogger(__name__)

SETTINGS_KEY = "net/listener"
DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "port": 11112,
    "aet": "MEDVIEW",
    "allow": [],
    "network": False,
    "bind": "0.0.0.0",
    "allow_ip": [],
    "tls_cert": "",
    "tls_key": "",
    "tls_ca": "",
}
_LISTS = ("allow", "allow_ip")
#: arrivals gathered into one GUI update (ms)
BATCH_MS = 150


def listener_settings() -> dict[str, Any]:
    """The listener settings, defaults filled in (values of the wrong type ignored)."""
    stored = user_settings.value(SETTINGS_KEY, {})
    out = dict(DEFAULTS)
    if isinstance(stored, dict):
        for key, default in DEFAULTS.items():
            value = stored.get(key)
            if isinstance(value, type(default)) and not (
                isinstance(value, bool) and not isinstance(default, bool)
            ):
                out[key] = value
    for key in _LISTS:
        out[key] = [str(a).strip() for a in out[key] if str(a).strip()]
    return out


def save_listener_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Store ``values`` (merged over the current settings); returns the result."""
    merged = listener_settings() | {k: v for k, v in values.items() if k in DEFAULTS}
    user_settings.set_value(SETTINGS_KEY, merged)
    return listener_settings()


def receiver_config(values: dict[str, Any], db_path: str | None = None) -> Any:
    """A validated :class:`ReceiverConfig` from listener settings (BadRequest if invalid).
    Loopback unless ``network`` is on."""
    from medview.net.receiver import ReceiverConfig

    host = str(values.get("bind") or "0.0.0.0") if values.get("network") else "127.0.0.1"
    return ReceiverConfig(
        port=int(values["port"]),
        aet=str(values["aet"]),
        host=host,
        allow_aets=list(values.get("allow") or []),
        allow_ips=list(values.get("allow_ip") or []),
        tls_cert=str(values.get("tls_cert") or "") or None,
        tls_key=str(values.get("tls_key") or "") or None,
        tls_ca=str(values.get("tls_ca") or "") or None,
        db_path=db_path,
    ).validate()


def _start_receiver(config: Any, bridge: ArrivalBridge, state: Any = None) -> Any:
    """Worker: bind and start the receiver (imports pynetdicom off the GUI thread)."""
    from medview.net.receiver import Receiver

    receiver = Receiver(config, on_arrival=bridge.push, on_association_done=bridge.push_done)
    return receiver.start()


def _stop_receiver(receiver: Any, state: Any = None) -> None:
    """Worker: stop a receiver (lets senders finish the instance in flight)."""
    receiver.stop()


class ArrivalBridge(QObject):
    """Thread-safe hand-over of receiver events to the GUI thread, batched.

    ``arrived(list[Arrival])`` and ``study_done(calling_aet, study_uids, count)`` are
    emitted on the GUI thread."""

    arrived = Signal(list)
    study_done = Signal(str, list, int)
    _wake = Signal()
    _done = Signal(str, list, int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._pending: list[Any] = []
        self.closed = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(BATCH_MS)
        self._timer.timeout.connect(self._drain)
        # emitted from other threads: delivered queued, on the GUI thread
        self._wake.connect(self._timer.start)
        self._done.connect(self._relay_done)
        self.batches = 0

    def push(self, arrival: Any) -> None:
        """Receiver thread: one stored and indexed instance."""
        if self.closed:
            return
        with self._lock:
            first = not self._pending
            self._pending.append(arrival)
        if first:
            self._wake.emit()

    def push_done(self, calling_aet: str, studies: set[str], count: int) -> None:
        """Receiver thread: a sender released (or dropped) its association."""
        if not self.closed and count:
            self._done.emit(calling_aet, sorted(studies), int(count))

    def _relay_done(self, aet: str, studies: list, count: int) -> None:
        self._drain()  # the last arrivals first
        if not self.closed:
            self.study_done.emit(aet, studies, count)

    def _drain(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if batch and not self.closed:
            self.batches += 1
            self.arrived.emit(batch)


class Listener(QObject):
    """Owns the GUI's receiver: :meth:`apply` (re)starts it from the settings, :meth:`stop`
    ends it. ``state_changed(text)`` describes it for the status bar; ``failed(text)`` is a
    one-line reason it could not start."""

    state_changed = Signal(str)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None, db_path: str | None = None) -> None:
        super().__init__(parent)
        self.bridge = ArrivalBridge(self)
        self.receiver: Any = None
        self.db_path = db_path
        self.settings: dict[str, Any] = listener_settings()
        self._slot = TaskSlot(self)
        self._rx: Any = None  # the receiver the worker side started (guarded by _rx_lock)
        self._rx_lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self.receiver is not None and self.receiver.running

    @property
    def aet(self) -> str:
        """Our AE title while listening ('' otherwise): the C-MOVE destination."""
        return str(self.receiver.config.aet) if self.running else ""

    def describe(self) -> str:
        if not self.running:
            return "Listener off"
        cfg = self.receiver.config
        where = "loopback" if cfg.host == "127.0.0.1" else f"network {cfg.host}"
        tls = ", TLS" if cfg.tls_cert else ""
        return f"Listening as {cfg.aet} on port {self.receiver.port} ({where}{tls})"

    def apply(self, values: dict[str, Any] | None = None) -> None:
        """(Re)start from ``values`` (default: the stored settings); stop when not enabled.
        Stopping the old receiver and binding the new one run on a worker."""
        from medview.net.common import NetError

        self.settings = dict(values) if values is not None else listener_settings()
        self.receiver = None
        config = None
        if self.settings.get("enabled"):
            try:
                config = receiver_config(self.settings, self.db_path)
            except NetError as exc:
                self.failed.emit(f"listener not started: {exc}")
        self._slot.run(
            self._restart,
            config,
            name="listener",
            on_result=self._started,
            on_error=self._start_failed,
        )

    def _restart(self, config: Any, state: Any = None) -> Any:
        """Worker: stop the receiver this listener runs (if any), start the new one."""
        with self._rx_lock:
            if self._rx is not None:
                rx, self._rx = self._rx, None
                _stop_receiver(rx)
            if config is None or self.bridge.closed:
                return None
            self._rx = _start_receiver(config, self.bridge, state)
            return self._rx

    def _started(self, receiver: Any) -> None:
        self.receiver = receiver
        self._announce()

    def _start_failed(self, message: str) -> None:
        self.failed.emit(f"listener not started: {message}")
        self._announce()

    def _announce(self) -> None:
        self.state_changed.emit(self.describe())

    def stop(self) -> None:
        """Stop now (the window is closing): waits for a start in progress, then lets
        senders finish the instance in flight (a few seconds at most)."""
        self.bridge.closed = True
        self._slot.close()
        with self._rx_lock:
            rx, self._rx = self._rx, None
        self.receiver = None
        if rx is not None:
            rx.stop()
