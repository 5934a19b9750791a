"""Clinic connectivity (Qt-free): DICOM networking (DIMSE) and DICOMweb.

* :mod:`medview.net.receiver` -- :class:`~medview.net.receiver.Receiver`, a storage SCP
  (C-STORE, C-ECHO) with ``start()``/``stop()`` and an arrival callback; every instance is
  written atomically into the per-user study store and indexed in the study database.
* :mod:`medview.net.dimse` -- SCU functions ``echo``, ``find``, ``get``, ``move``, ``send``.
* :mod:`medview.net.dicomweb` -- the same five over DICOMweb (QIDO-RS, WADO-RS, STOW-RS).
* :mod:`medview.net.nodes` -- remote nodes kept as plain JSON in the user data folder.
* :mod:`medview.net.store` -- the study store: UID-named paths, atomic writes, indexing.

Long operations are plain functions taking ``state: TaskState | None`` (progress and
cancel), so the GUI can run them through its worker slots. Errors a user can cause are
:class:`~medview.net.common.RemoteRefused` (exit 1) or
:class:`~medview.net.common.Unreachable` / :class:`~medview.net.common.BadRequest` (exit 2).
"""

from __future__ import annotations

from medview.net.common import BadRequest, NetError, RemoteRefused, Unreachable
from medview.net.nodes import Node

__all__ = ["BadRequest", "NetError", "Node", "RemoteRefused", "Unreachable"]
