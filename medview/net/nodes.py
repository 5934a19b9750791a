"""Remote nodes (PACS, modalities, DICOMweb servers), kept as plain JSON.

The file is ``nodes.json`` in the per-user data folder (:func:`medview.paths.user_data_dir`;
``MEDVIEW_HOME`` moves it), or ``MEDVIEW_NODES``. It is written atomically. Layout::

    {"nodes": [{"name": "pacs", "host": "10.0.0.5", "port": 104, "aet": "PACS"},
               {"name": "web", "url": "https://pacs.example/dicom-web"}]}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from medview.net.common import BadRequest, check_aet


@dataclass
class Node:
    """A DIMSE peer (``host``, ``port``, ``aet``) or a DICOMweb service (``url``)."""

    name: str = ""
    host: str = ""
    port: int = 0
    aet: str = ""
    url: str = ""
    tls_ca: str = ""  # DIMSE over TLS: verify the peer with this CA bundle (PEM)
    tls_cert: str = ""  # optional client certificate and key (PEM) for mutual TLS
    tls_key: str = ""

    @property
    def is_dicomweb(self) -> bool:
        return bool(self.url)

    def describe(self) -> str:
        """``name (AET@host:port)`` or ``name (url)``, for messages."""
        where = self.url if self.url else f"{self.aet}@{self.host}:{self.port}"
        return f"{self.name} ({where})" if self.name else where

    def validate(self) -> Node:
        """Raise :class:`BadRequest` unless this is a usable DIMSE or DICOMweb node."""
        if self.url:
            if not self.url.startswith(("http://", "https://")):
                raise BadRequest(f"DICOMweb URL {self.url!r} must start with http:// or https://")
            return self
        if not self.host:
            raise BadRequest(
                "a DIMSE node needs --host, --port and --aet (or use --node/--dicomweb)"
            )
        if not 0 < int(self.port) < 65536:
            raise BadRequest(f"port {self.port} is not between 1 and 65535")
        check_aet(self.aet, "called AE title")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise BadRequest("TLS client certificate and key go together")
        for path in (self.tls_ca, self.tls_cert, self.tls_key):
            if path and not os.path.isfile(path):
                raise BadRequest("TLS file not found", path)
        return self

    def ssl_context(self) -> object | None:
        """A client TLS context when ``tls_ca`` is set (hostname checked), else None."""
        if not self.tls_ca:
            return None
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca)
        if self.tls_cert:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        return ctx

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        return {k: v for k, v in d.items() if v not in ("", 0) or k == "name"}


def nodes_path() -> Path:
    """Where the node list lives (``MEDVIEW_NODES`` overrides it)."""
    override = os.environ.get("MEDVIEW_NODES")
    if override:
        return Path(override)
    from medview.paths import user_data_dir

    return user_data_dir() / "nodes.json"


def _read() -> dict:
    path = nodes_path()
    if not path.exists():
        return {"nodes": []}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadRequest(f"cannot read the node list ({type(exc).__name__})", path) from exc
    if not isinstance(data, dict) or not isinstance(data.get("nodes", []), list):
        raise BadRequest("the node list is not {'nodes': [...]}", path)
    data.setdefault("nodes", [])
    return data


def _write(data: dict) -> None:
    path = nodes_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_nodes() -> list[Node]:
    """All configured nodes, in file order."""
    out = []
    for item in _read()["nodes"]:
        if isinstance(item, dict):
            keys = ("name", "host", "port", "aet", "url", "tls_ca", "tls_cert", "tls_key")
            fields = {k: item[k] for k in keys if k in item}
            out.append(Node(**fields))
    return out


def get_node(name: str) -> Node:
    """The node called ``name`` (case-insensitive), or BadRequest listing the known ones."""
    nodes = load_nodes()
    for n in nodes:
        if n.name.lower() == name.lower():
            return n
    known = ", ".join(n.name for n in nodes) or "none configured"
    raise BadRequest(f"no node named {name!r} (known: {known}; see 'medview pacs nodes')")


def add_node(node: Node) -> None:
    """Add or replace (same name) a node."""
    if not node.name:
        raise BadRequest("a node needs a name")
    node.validate()
    data = _read()
    data["nodes"] = [
        n for n in data["nodes"] if str(n.get("name", "")).lower() != node.name.lower()
    ]
    data["nodes"].append(node.as_dict())
    _write(data)


def remove_node(name: str) -> bool:
    """Remove the node called ``name``; False when there was none."""
    data = _read()
    before = len(data["nodes"])
    data["nodes"] = [n for n in data["nodes"] if str(n.get("name", "")).lower() != name.lower()]
    if len(data["nodes"]) == before:
        return False
    _write(data)
    return True


def receiver_settings() -> dict:
    """Defaults for ``medview receive`` kept in the same file under ``"receiver"``."""
    value = _read().get("receiver", {})
    return value if isinstance(value, dict) else {}
