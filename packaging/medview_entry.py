"""Entry script of the frozen medview app (``dist/medview/medview``); also runs from source.

``medview.cli.main`` calls :func:`multiprocessing.freeze_support` first, so the
decoder worker processes (forkserver on Linux, spawn on Windows/macOS) start from
this same executable.

``MEDVIEW_NETWORK_AUDIT=FILE`` (used by the packaging tests) installs a
:func:`sys.addaudithook` hook before anything else is imported: every attempt to
resolve a host name or to connect/send/bind a non-``AF_UNIX`` socket is appended to
FILE and refused (a bind to a loopback address is logged as allowed). Child processes
started from this executable inherit the variable, so the decoder workers are audited
too.
"""

import os
import sys


def _install_network_audit(log_path: str) -> None:
    import socket

    local = {getattr(socket, "AF_UNIX", None)} - {None}
    guarded = {"socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind"}
    lookups = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"}

    def hook(event: str, args: tuple) -> None:
        if event in guarded:
            sock, address = args[0], args[1] if len(args) > 1 else None
            if getattr(sock, "family", None) in local:
                return
            host = address[0] if isinstance(address, tuple) and address else address
            if event == "socket.bind" and host in ("127.0.0.1", "::1", "localhost"):
                # a loopback bind (e.g. an "is IPv6 available" probe) is not network use
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(f"{os.getpid()} allowed-loopback {event} {address!r}\n")
                return
            what = address
        elif event in lookups:
            what = args
        else:
            return
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {event} {what!r}\n")
        raise OSError(f"medview network audit: {event} refused")

    sys.addaudithook(hook)


if os.environ.get("MEDVIEW_NETWORK_AUDIT"):
    _install_network_audit(os.environ["MEDVIEW_NETWORK_AUDIT"])

from medview.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
