"""``medview receive``: a DICOM storage SCP that files arrivals into the study database."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from medview.commands._args import add_db, add_json

if TYPE_CHECKING:
    from medview.net.store import Arrival

HELP = "listen for DICOM C-STORE (modalities, PACS) and file every instance into the study database"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, help="TCP port (default: settings, else 11112)")
    parser.add_argument("--aet", help="our AE title (default: settings, else MEDVIEW)")
    parser.add_argument(
        "--bind",
        metavar="HOST",
        help="interface to listen on (default 127.0.0.1; 0.0.0.0 for the whole network)",
    )
    parser.add_argument(
        "--allow", metavar="AET,...", help="accept only these calling AE titles (comma-separated)"
    )
    parser.add_argument(
        "--allow-ip", metavar="IP,...", help="accept connections only from these addresses"
    )
    parser.add_argument(
        "--min-free-mb",
        type=int,
        default=256,
        help="refuse storage when free disk would fall below this (default 256)",
    )
    parser.add_argument(
        "--max-instance-mb", type=int, default=2048, help="largest instance accepted (default 2048)"
    )
    parser.add_argument(
        "--max-pdu", type=int, default=1048576, help="largest PDU accepted, bytes (default 1 MiB)"
    )
    parser.add_argument("--store", metavar="DIR", help="study store folder (default: user data)")
    parser.add_argument("--tls-cert", metavar="PEM", help="TLS certificate (enables DICOM TLS)")
    parser.add_argument("--tls-key", metavar="PEM", help="TLS private key")
    parser.add_argument("--tls-ca", metavar="PEM", help="require client certificates from this CA")
    add_db(parser)
    add_json(parser, "print one JSON line per stored instance")


def run(args: argparse.Namespace) -> int:
    """Listen until SIGINT/SIGTERM; finish the instances in flight; exit 0."""
    import gc
    import json
    import logging
    import signal
    import sys
    import threading

    from medview.commands._common import error
    from medview.net.common import NetError
    from medview.net.nodes import receiver_settings
    from medview.net.receiver import DEFAULT_PORT, Receiver, ReceiverConfig

    _setup_logging("medview receive")
    try:
        settings = receiver_settings()
    except NetError as exc:
        return error(str(exc))

    def split(text: str | None, key: str) -> list[str]:
        if text is None:
            value = settings.get(key, [])
            return [str(v) for v in value] if isinstance(value, list) else []
        return [t.strip() for t in text.split(",") if t.strip()]

    try:
        config = ReceiverConfig(
            port=args.port if args.port is not None else int(settings.get("port", DEFAULT_PORT)),
            aet=args.aet or str(settings.get("aet", "MEDVIEW")),
            host=args.bind or str(settings.get("bind", "127.0.0.1")),
            allow_aets=split(args.allow, "allow"),
            allow_ips=split(args.allow_ip, "allow_ip"),
            min_free_bytes=max(0, args.min_free_mb) * 1024 * 1024,
            max_instance_bytes=max(1, args.max_instance_mb) * 1024 * 1024,
            max_pdu=max(4096, args.max_pdu),
            db_path=args.db,
            store_dir=args.store,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_ca=args.tls_ca,
        )
        lock = threading.Lock()

        def arrived(a: Arrival) -> None:
            with lock:
                if args.json:
                    sys.stdout.write(json.dumps(a.as_json()) + "\n")
                else:
                    note = "" if a.indexed else f" (stored, not indexed: {a.reason})"
                    sys.stdout.write(f"stored {a.sop_uid} from {a.calling_aet} -> {a.path}{note}\n")
                sys.stdout.flush()

        receiver = Receiver(config, on_arrival=arrived).start()
    except NetError as exc:
        return error(str(exc))
    except (OSError, ValueError) as exc:  # unreadable TLS files and the like
        return error(f"cannot start the receiver: {exc}")
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    receiver.wait_ready()  # "listening" once arrivals are indexed as they come
    gc.freeze()  # start-up's objects: no full collection walks them again mid-push
    tls = " with TLS" if config.tls_cert else ""
    logging.getLogger("medview.net").warning(
        "listening on %s:%d as %s%s (Ctrl+C to stop)", config.host, receiver.port, config.aet, tls
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        receiver.stop()
        for s, h in old.items():
            signal.signal(s, h)
    return 0


def _setup_logging(prefix: str) -> None:
    """One line per event on stderr, ours only; pynetdicom's tracebacks stay silent."""
    import logging
    import sys

    class _Stderr(logging.Handler):
        """Writes to the current ``sys.stderr`` (which tests and wrappers may swap)."""

        def emit(self, record: logging.LogRecord) -> None:
            try:
                sys.stderr.write(self.format(record) + "\n")
                sys.stderr.flush()
            except Exception:
                self.handleError(record)

    net = logging.getLogger("medview.net")
    handler = next((h for h in net.handlers if type(h).__name__ == "_Stderr"), None)
    if handler is None:
        handler = _Stderr()
        net.addHandler(handler)
    handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    net.setLevel(logging.WARNING)
    net.propagate = False
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL + 1)
