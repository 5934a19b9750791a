"""The transfer queue: retrieves and sends run one after another on a worker, each row
showing its progress with a cancel button. Jobs are plain functions taking ``state``
(:mod:`medview.net.transfers`), run through :meth:`medview.ui.workers.TaskSlot.run`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from medview.ui.workers import TaskHandle, TaskSlot

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


@dataclass
class TransferJob:
    """One queued transfer: ``fn(*args, state=..., **kwargs)``."""

    label: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    on_result: Callable[[Any], None] | None = None
    status: str = QUEUED
    message: str = ""
    result: Any = None
    handle: TaskHandle | None = None


class TransferQueue(QWidget):
    """A table of transfers; ``job_finished(job)`` when one ends (any way)."""

    job_finished = Signal(object)
    job_started = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs: list[TransferJob] = []
        self._slot = TaskSlot(self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, 4, self)
        self.table.setHorizontalHeaderLabels(["Transfer", "Status", "Progress", ""])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        head.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setColumnWidth(2, 160)
        self.table.setColumnWidth(3, 70)
        lay.addWidget(self.table)
        row = QHBoxLayout()
        row.addStretch(1)
        self.clear_button = QPushButton("Clear finished", self)
        self.clear_button.clicked.connect(self.clear_finished)
        row.addWidget(self.clear_button)
        lay.addLayout(row)

    # ----------------------------------------------------------------- queue
    def enqueue(
        self,
        label: str,
        fn: Callable[..., Any],
        *args: Any,
        on_result: Callable[[Any], None] | None = None,
        **kwargs: Any,
    ) -> TransferJob:
        """Add a transfer; it starts when the ones before it have ended."""
        job = TransferJob(label, fn, args, kwargs, on_result)
        self.jobs.append(job)
        r = self.table.rowCount()
        self.table.insertRow(r)
        self.table.setItem(r, 0, QTableWidgetItem(label))
        self.table.setItem(r, 1, QTableWidgetItem(QUEUED))
        bar = QProgressBar(self.table)
        bar.setRange(0, 1000)
        bar.setValue(0)
        self.table.setCellWidget(r, 2, bar)
        cancel = QToolButton(self.table)
        cancel.setText("Cancel")
        cancel.clicked.connect(lambda _=False, j=job: self.cancel(j))
        self.table.setCellWidget(r, 3, cancel)
        self._next()
        return job

    def _row(self, job: TransferJob) -> int:
        return self.jobs.index(job)

    def _set_status(self, job: TransferJob, status: str, message: str = "") -> None:
        job.status = status
        job.message = message or job.message
        r = self._row(job)
        item = self.table.item(r, 1)
        if item is not None:
            item.setText(f"{status}: {message}" if message else status)
            item.setToolTip(message)
        if status in (DONE, FAILED, CANCELLED):
            button = self.table.cellWidget(r, 3)
            if button is not None:
                button.setEnabled(False)
            bar = self.table.cellWidget(r, 2)
            if isinstance(bar, QProgressBar):
                bar.setFormat("%p%" if status == DONE else status)
                if status == DONE:
                    bar.setValue(1000)

    def _next(self) -> None:
        if self._slot.busy or self._slot.closed:
            return
        job = next((j for j in self.jobs if j.status == QUEUED), None)
        if job is None:
            return
        self._set_status(job, RUNNING)
        job.handle = self._slot.run(
            job.fn,
            *job.args,
            name=job.label,
            on_progress=lambda f, m, j=job: self._progress(j, f, m),
            on_result=lambda v, j=job: self._result(j, v),
            on_error=lambda m, j=job: self._set_status(j, FAILED, m),
            on_finished=lambda h, j=job: self._finished(j, h),
            **job.kwargs,
        )
        self.job_started.emit(job)

    def _progress(self, job: TransferJob, fraction: float, message: str) -> None:
        bar = self.table.cellWidget(self._row(job), 2)
        if isinstance(bar, QProgressBar):
            bar.setValue(int(1000 * max(0.0, min(1.0, fraction))))
            bar.setFormat(message or "%p%")
        item = self.table.item(self._row(job), 1)
        if item is not None and message:
            item.setText(f"{RUNNING}: {message}")

    def _result(self, job: TransferJob, value: Any) -> None:
        job.result = value
        self._set_status(job, DONE, _summary(value))
        if job.on_result is not None:
            job.on_result(value)

    def _finished(self, job: TransferJob, handle: TaskHandle) -> None:
        if handle.cancelled and job.status == RUNNING:
            self._set_status(job, CANCELLED)
        elif job.status == RUNNING:  # ended without a result or error (should not happen)
            self._set_status(job, FAILED, "ended without a result")
        self.job_finished.emit(job)
        self._next()

    def cancel(self, job: TransferJob) -> None:
        """Cancel a running transfer (instances already stored stay) or drop a queued one."""
        if job.status == QUEUED:
            self._set_status(job, CANCELLED)
            self.job_finished.emit(job)
        elif job.status == RUNNING and job.handle is not None:
            job.handle.cancel()
            self._set_status(job, CANCELLED, "cancelling")

    def clear_finished(self) -> None:
        """Remove the rows of transfers that have ended."""
        for job in [j for j in self.jobs if j.status in (DONE, FAILED, CANCELLED)]:
            self.table.removeRow(self._row(job))
            self.jobs.remove(job)

    @property
    def busy(self) -> bool:
        """A transfer is running or waiting."""
        return self._slot.busy or any(j.status in (QUEUED, RUNNING) for j in self.jobs)

    def shutdown(self) -> None:
        """Cancel everything (the window is closing)."""
        for job in self.jobs:
            if job.status == QUEUED:
                job.status = CANCELLED
        self._slot.close()


def _summary(value: Any) -> str:
    """One line for a finished transfer's result dict."""
    if not isinstance(value, dict):
        return ""
    if "sent" in value:
        text = f"{value['sent']} sent"
        return text + (f", {value['failed']} failed" if value.get("failed") else "")
    if "stored" in value:
        text = f"{value['stored']} stored"
        return text + (f", {value['failed']} failed" if value.get("failed") else "")
    return ""
