"""``medview pacs``: talk to a PACS or modality (DIMSE) or a DICOMweb service."""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import TYPE_CHECKING, Any

from medview.commands._args import add_actions, add_db, add_json, add_series

if TYPE_CHECKING:
    from medview.net.nodes import Node

HELP = "query/retrieve/send with a PACS over DICOM (DIMSE) or DICOMweb; list configured nodes"

_TARGET_HELP = "--node NAME | --host H --port P --aet AET | --dicomweb URL"


def _target(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("remote node (one of)")
    g.add_argument("--node", metavar="NAME", help="a node from 'medview pacs nodes'")
    g.add_argument("--host", help="DIMSE peer host (with --port and --aet)")
    g.add_argument("--port", type=int, help="DIMSE peer port")
    g.add_argument("--aet", help="DIMSE peer (called) AE title")
    g.add_argument("--dicomweb", metavar="URL", help="DICOMweb service root URL")
    t = p.add_argument_group("DICOM TLS (DIMSE)")
    t.add_argument("--tls-ca", metavar="PEM", help="use TLS; verify the peer with this CA")
    t.add_argument("--tls-cert", metavar="PEM", help="client certificate (mutual TLS)")
    t.add_argument("--tls-key", metavar="PEM", help="client private key")
    p.add_argument(
        "--calling-aet", default="MEDVIEW", help="our AE title on the association (default MEDVIEW)"
    )
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="default 30")
    p.add_argument("--retries", type=int, default=0, help="reconnect attempts (default 0)")
    add_db(p)
    add_json(p)


# what `find` matches on: (option, metavar, help, keyword of the protocol's find())
_QUERY = (
    ("--patient-id", "ID", "wildcards * and ? allowed", "patient_id"),
    ("--patient-name", "PAT", "e.g. 'DOE^J*'", "patient_name"),
    ("--study-date", "YYYYMMDD[-YYYYMMDD]", "date or range", "study_date"),
    ("--modality", "M", "e.g. CT", "modality"),
    ("--accession", "A", "accession number", "accession"),
    ("--study", "UID", "study instance UID", "study_uid"),
    ("--series", "UID", "series instance UID (series level)", "series_uid"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = add_actions(parser, "pacs_command")
    p = sub.add_parser("echo", help="C-ECHO (or a QIDO-RS ping): is the node there?")
    _target(p)
    p = sub.add_parser("find", help="C-FIND / QIDO-RS: one line (JSON object) per match")
    _target(p)
    p.add_argument("--level", choices=["patient", "study", "series"], default="study")
    for flag, metavar, text, _key in _QUERY:
        p.add_argument(flag, metavar=metavar, help=text)
    for name, text in (
        ("get", "C-GET / WADO-RS a study or series into the local database"),
        ("move", "C-MOVE a study or series to a storage SCP (ours by default)"),
    ):
        p = sub.add_parser(name, help=text)
        _target(p)
        p.add_argument("--study", metavar="UID", required=True, help="study instance UID")
        add_series(p, "only this series")
        p.add_argument("--store", metavar="DIR", help="study store folder (default: user data)")
        if name == "move":
            p.add_argument(
                "--dest",
                metavar="AET",
                required=True,
                help="destination AE title (the remote must know it)",
            )
            p.add_argument(
                "--listen-port",
                type=int,
                metavar="P",
                help="receive the move here with a temporary SCP on this port (default: the "
                "receiver port from settings, 11112; skipped when that port is busy, e.g. "
                "'medview receive' already runs there)",
            )
    p = sub.add_parser("send", help="C-STORE / STOW-RS files, folders or a database study")
    _target(p)
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--study", metavar="UID", help="send this study from the local database")
    p = sub.add_parser("nodes", help="list configured nodes (add/remove them)")
    p.add_argument("action", nargs="?", choices=["list", "add", "remove"], default="list")
    p.add_argument("name", nargs="?", help="node name (add/remove)")
    p.add_argument("--host")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--aet", default="")
    p.add_argument("--dicomweb", metavar="URL", default="")
    p.add_argument("--tls-ca", metavar="PEM", default="")
    p.add_argument("--tls-cert", metavar="PEM", default="")
    p.add_argument("--tls-key", metavar="PEM", default="")
    add_json(p)


def _assoc(args: argparse.Namespace) -> dict[str, Any]:
    """The association options every action passes: our AE title, timeout, retries."""
    return {"calling_aet": args.calling_aet, "timeout": args.timeout, "retries": args.retries}


def _protocol(node: Node) -> ModuleType:
    """The module that speaks to ``node``: :mod:`medview.net.dicomweb` or :mod:`~medview.net.dimse`."""
    if node.is_dicomweb:
        from medview.net import dicomweb

        return dicomweb
    from medview.net import dimse

    return dimse


def _node(args: argparse.Namespace) -> Node:
    from medview.net.common import BadRequest
    from medview.net.nodes import Node, get_node

    given = [
        bool(args.node),
        bool(args.host or args.port or args.aet),
        bool(args.dicomweb),
    ]
    if sum(given) != 1:
        raise BadRequest(f"give exactly one remote node: {_TARGET_HELP}")
    if args.node:
        node = get_node(args.node)
        node.tls_ca = args.tls_ca or node.tls_ca
        node.tls_cert = args.tls_cert or node.tls_cert
        node.tls_key = args.tls_key or node.tls_key
        return node.validate()
    if args.dicomweb:
        return Node(url=args.dicomweb).validate()
    if not (args.host and args.port and args.aet):
        raise BadRequest("--host, --port and --aet go together")
    return _given_node(args).validate()


def _given_node(args: argparse.Namespace, name: str = "") -> Node:
    """The node the options spell out: --host/--port/--aet or --dicomweb, the TLS files."""
    from medview.net.nodes import Node

    return Node(
        name=name,
        host=args.host or "",
        port=args.port,
        aet=args.aet,
        url=args.dicomweb or "",
        tls_ca=args.tls_ca or "",
        tls_cert=args.tls_cert or "",
        tls_key=args.tls_key or "",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from medview.commands._common import error
    from medview.commands.receive import _setup_logging
    from medview.errors import MedviewError
    from medview.net.common import NetError

    action = getattr(args, "pacs_command", None)
    if not action:
        return error(
            "give an action: echo, find, get, move, send or nodes (see medview pacs --help)"
        )
    _setup_logging(f"medview pacs {action}")
    try:
        return int(_ACTIONS[action](args))
    except NetError as exc:
        print(f"medview: {exc}", file=sys.stderr)
        return exc.exit_code
    except MedviewError as exc:
        return error(str(exc))


def _echo(args: argparse.Namespace) -> int:
    from medview.commands._common import print_json

    node = _node(args)
    proto = _protocol(node)
    res = proto.echo(node, **_assoc(args))
    if args.json:
        print_json(res)
    else:
        print(f"{res['node']} answered in {res['ms']} ms")
    return 0


def _find(args: argparse.Namespace) -> int:
    import sys

    from medview.commands._common import print_json

    node = _node(args)
    proto = _protocol(node)
    query = {key: getattr(args, flag[2:].replace("-", "_")) for flag, _, _, key in _QUERY}
    matches = proto.find(node, level=args.level, **_assoc(args), **query)
    for m in matches:
        if args.json:
            print_json(m)
        elif m["level"] == "patient":
            print(
                f"{m['patient_id'] or '-':<16} {m['patient_name'] or '-':<28} {m.get('birth_date') or ''}"
            )
        elif m["level"] == "study":
            mods = "/".join(m.get("modalities") or []) or "-"
            print(
                f"{m['study_date'] or '--------'}  {m['patient_name'] or '-':<24} "
                f"{m['patient_id'] or '-':<12} {mods:<6} {m.get('instances') or '?':>5} images  "
                f"{m['description'] or ''}  [{m['study_uid']}]"
            )
        else:
            print(
                f"{m['modality'] or '-':<4} #{m.get('series_number') or '-':<4} "
                f"{m.get('instances') or '?':>5} images  {m['description'] or ''}  [{m['series_uid']}]"
            )
    if not matches:
        print(f"medview: nothing found on {node.describe()}", file=sys.stderr)
        return 1
    return 0


def _get(args: argparse.Namespace) -> int:
    import sys

    from medview.commands._common import print_json
    from medview.io.database import StudyDatabase

    node = _node(args)
    proto = _protocol(node)
    db_path = str(StudyDatabase(args.db).path)
    res = proto.get(
        node,
        args.study,
        series_uid=args.series,
        db_path=db_path,
        store_dir=args.store,
        **_assoc(args),
    )
    for line in res["not_indexed"][:5]:
        print(f"medview: stored but not indexed: {line}", file=sys.stderr)
    if args.json:
        print_json({k: v for k, v in res.items() if k != "paths"} | {"database": db_path})
    else:
        print(f"stored {res['stored']} instance(s) from {node.describe()} into {db_path}")
    if not res["stored"]:
        print(
            f"medview: nothing retrieved from {node.describe()} for study {args.study}",
            file=sys.stderr,
        )
        return 1
    return 0


def _move(args: argparse.Namespace) -> int:
    import sys

    from medview.commands._common import print_json
    from medview.io.database import StudyDatabase
    from medview.net import dimse
    from medview.net.common import BadRequest
    from medview.net.nodes import receiver_settings
    from medview.net.receiver import DEFAULT_PORT, Receiver, ReceiverConfig

    node = _node(args)
    if node.is_dicomweb:
        raise BadRequest("C-MOVE is DIMSE only; with --dicomweb use 'medview pacs get'")
    db_path = str(StudyDatabase(args.db).path)
    port = args.listen_port
    if port is None:
        port = int(receiver_settings().get("port", DEFAULT_PORT))
    got: list = []
    receiver = None
    try:
        receiver = Receiver(
            ReceiverConfig(port=port, aet=args.dest, db_path=db_path, store_dir=args.store),
            on_arrival=lambda a: got.append(a),
        ).start()
    except BadRequest:
        if args.listen_port is not None:
            raise
        receiver = None  # port busy: another receiver (e.g. 'medview receive') takes the move
    try:
        res = dimse.move(node, args.study, args.dest, series_uid=args.series, **_assoc(args))
    finally:
        if receiver is not None:
            receiver.flush(60)
            receiver.stop()
    # the remote may send to another receiver (e.g. 'medview receive' on the port it knows
    # for that AE title): then its completed count is what was stored there
    here = bool(got)
    stored = sum(1 for a in got if a.indexed) if here else res.get("completed", 0)
    out = {
        "stored": stored,
        "completed": res.get("completed", 0),
        "failed": res.get("failed", 0),
        "warning": res.get("warning", 0),
        "received_here": here,
        "database": db_path,
    }
    if args.json:
        print_json(out)
    elif here:
        print(f"stored {stored} instance(s) moved from {node.describe()} into {db_path}")
    else:
        print(f"stored {stored} instance(s): {node.describe()} moved them to {args.dest}")
    if not stored:
        print(
            f"medview: nothing moved from {node.describe()} for study {args.study}", file=sys.stderr
        )
        return 1
    return 0


def _send(args: argparse.Namespace) -> int:
    import sys

    from medview.commands._common import print_json
    from medview.net.common import BadRequest

    node = _node(args)
    paths = list(args.paths)
    if args.study:
        from medview.io.database import StudyDatabase

        for s in StudyDatabase(args.db).series(args.study):
            paths.extend(s["files"])
        if not paths:
            raise BadRequest(f"study {args.study} is not in the local database")
    if not paths:
        raise BadRequest("give files or folders to send, or --study UID")
    proto = _protocol(node)
    res = proto.send(node, paths, **_assoc(args))
    if args.json:
        print_json(res)
    else:
        print(f"sent {res['sent']} instance(s) to {node.describe()}")
    if res["failed"]:
        for line in res["errors"][:-1][:10]:
            print(f"medview: {line}", file=sys.stderr)
        print(
            f"medview: {res['failed']} instance(s) not sent: {res['errors'][-1]}", file=sys.stderr
        )
        return 1
    return 0


def _nodes(args: argparse.Namespace) -> int:
    from medview.commands._common import print_json
    from medview.net.common import BadRequest
    from medview.net.nodes import add_node, load_nodes, nodes_path, remove_node

    if args.action == "add":
        if not args.name:
            raise BadRequest("nodes add NAME (--host H --port P --aet AET | --dicomweb URL)")
        node = _given_node(args, args.name)
        add_node(node)
        print(f"added {node.describe()} to {nodes_path()}")
        return 0
    if args.action == "remove":
        if not args.name:
            raise BadRequest("nodes remove NAME")
        if not remove_node(args.name):
            raise BadRequest(f"no node named {args.name!r}")
        print(f"removed {args.name}")
        return 0
    nodes = load_nodes()
    if args.json:
        print_json({"nodes": [n.as_dict() for n in nodes], "file": str(nodes_path())})
        return 0
    if not nodes:
        print(
            f"no nodes configured ({nodes_path()}); add one with 'medview pacs nodes add NAME ...'"
        )
    for n in nodes:
        print(f"{n.name:<16} {n.url or f'{n.aet}@{n.host}:{n.port}'}")
    return 0


_ACTIONS = {
    "echo": _echo,
    "find": _find,
    "get": _get,
    "move": _move,
    "send": _send,
    "nodes": _nodes,
}
