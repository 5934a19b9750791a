"""Append-only audit log: one JSON line per event in the user data folder.

Anyone may call :func:`record` (the GUI when it opens or analyses a study, the CLI when it
exports, writes an SR or a report)::

    from medview.results import audit
    audit.record("export", study_uid=uid, output="/media/usb/export", anonymized=True)

Safety:

* **Concurrent writers** (several medview processes, threads): the file is opened with
  ``O_APPEND`` and each event is written with one ``write`` call while an exclusive
  ``fcntl.flock`` is held on a sibling ``.lock`` file, so lines never interleave.
* **kill -9** mid-write leaves at most one torn last line: the reader skips it with a note, and
  the next writer starts a new line first (the torn bytes stay, the log is never rewritten).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_NAME = "audit.jsonl"
ACTIONS = ("open", "analyze", "export", "send", "report", "sr")


def log_path() -> Path:
    """The audit log: ``MEDVIEW_AUDIT`` or ``<user data folder>/audit.jsonl``."""
    override = os.environ.get("MEDVIEW_AUDIT")
    if override:
        return Path(override)
    from medview.paths import user_data_dir

    return user_data_dir() / LOG_NAME


def os_user() -> str:
    """The operating-system user running medview."""
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return os.environ.get("USER") or os.environ.get("USERNAME") or str(os.getuid())


def now_iso() -> str:
    """UTC time with milliseconds, ``2026-12-01T12:00:00.123Z``."""
    t = _dt.datetime.now(_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: O_APPEND single writes only
        yield
        return
    fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def model_info(name: str, version: str = "", sha256: str = "") -> dict[str, str]:
    """The ``model`` field of an event; the sha256 comes from the model card when not given."""
    if not sha256:
        try:
            from medview.ai.registry import get_model

            sha256 = str(get_model(name).meta.get("weights", {}).get("sha256", ""))
        except Exception:
            sha256 = ""
    return {"name": name, "version": version, "sha256": sha256}


def record(
    action: str,
    *,
    study_uid: str | None = None,
    series_uids: list[str] | None = None,
    model: dict[str, str] | list[dict[str, str]] | None = None,
    output: str | None = None,
    path: str | os.PathLike[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Append one event and return it. ``extra`` keys must be JSON-able.

    Raises :class:`OSError` when the log cannot be written (callers decide whether an action
    may go on without its audit line; the CLI commands refuse).
    """
    event: dict[str, Any] = {
        "time": now_iso(),
        "user": os_user(),
        "action": action,
        "study_uid": study_uid,
        "series_uids": list(series_uids or []),
        "model": model,
        "output": output,
    }
    event.update(extra)
    line = (json.dumps(event, default=str, separators=(",", ":")) + "\n").encode("utf-8")
    target = Path(path) if path is not None else log_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target):
        fd = os.open(str(target), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a writer was killed mid-line: start a fresh one
            written = os.write(fd, line)
            while written < len(line):  # regular files write whole; be safe anyway
                written += os.write(fd, line[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
    return event


@dataclass
class AuditLog:
    """What :func:`read` found: events in file order and notes on skipped lines."""

    path: str
    events: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "events": self.events, "notes": self.notes}


def parse_since(text: str) -> _dt.datetime:
    """``YYYY-MM-DD``, ``YYYYMMDD`` or an ISO date-time (UTC unless it has an offset)."""
    s = text.strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return _dt.datetime.strptime(s, fmt).replace(tzinfo=_dt.timezone.utc)
        except ValueError:
            pass
    try:
        t = _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since must be a date like 2026-12-01, not {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def _event_time(event: dict[str, Any]) -> _dt.datetime | None:
    try:
        return _dt.datetime.fromisoformat(str(event.get("time", "")).replace("Z", "+00:00"))
    except ValueError:
        return None


def read(
    path: str | os.PathLike[str] | None = None,
    study: str | None = None,
    since: str | _dt.datetime | None = None,
) -> AuditLog:
    """Events of the log (optionally of one study UID, at or after ``since``).

    Torn or corrupt lines (a writer killed mid-line) are skipped with a note naming the line.
    A missing log is an empty one.
    """
    target = Path(path) if path is not None else log_path()
    result = AuditLog(str(target))
    if isinstance(since, str):
        since = parse_since(since)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        return result
    for n, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line.decode("utf-8"))
            if not isinstance(event, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            result.notes.append(f"{target}: line {n} skipped (torn or corrupt, {len(line)} bytes)")
            continue
        if study and study != event.get("study_uid") and study not in event.get("studies", []):
            continue
        if since is not None:
            t = _event_time(event)
            if t is None or t < since:
                continue
        result.events.append(event)
    return result
