"""Run many ``medview`` CLI invocations fast: one interpreter imports medview once, then forks
one child per run (``python3 runner.py JOBS.json RESULTS.json``).

Each child is what ``python -m medview ARGS`` would be, minus the interpreter start-up: its
own session (process group), an address-space limit, stdout/stderr to files, a timeout
(the whole group is killed), and its exit status and peak resident memory (``wait4``)
recorded. An uncaught exception prints its traceback to stderr as the interpreter would.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback


def _child(argv: list[str], out: str, err: str, as_limit: int) -> None:
    os.setsid()
    resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))
    fd_out = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    fd_err = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd_out, 1)
    os.dup2(fd_err, 2)
    sys.stdout = os.fdopen(1, "w", closefd=False)
    sys.stderr = os.fdopen(2, "w", closefd=False)
    code = 1
    try:
        from medview.cli import main

        code = int(main(argv) or 0)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run_one(argv: list[str], out: str, err: str, timeout: float, as_limit: int) -> dict:
    """Fork, run ``medview ARGV`` in the child, wait; returns rc (None: hang), seconds, rss."""
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(argv, out, err, as_limit)
    rc: int | None = None
    rss = 0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            rss = usage.ru_maxrss * 1024
            break
        if time.monotonic() - start > timeout:
            _kill_group(pid)
            os.waitpid(pid, 0)
            break
        time.sleep(0.01)
    _kill_group(pid)  # decoder workers or anything else the run left behind
    return {"returncode": rc, "seconds": time.monotonic() - start, "max_rss": rss}


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except (ProcessLookupError, PermissionError):
        pass


def main() -> None:
    jobs_path, results_path = sys.argv[1], sys.argv[2]
    with open(jobs_path, encoding="utf-8") as fp:
        spec = json.load(fp)
    import pydicom  # noqa: F401

    import medview.cli  # noqa: F401 - imported once, inherited by every child
    import medview.commands.info  # noqa: F401
    import medview.commands.render  # noqa: F401
    import medview.imaging.display  # noqa: F401
    import medview.io  # noqa: F401

    results = []
    for job in spec["jobs"]:
        res = run_one(job["argv"], job["stdout"], job["stderr"], spec["timeout"], spec["as_limit"])
        results.append(res)
    with open(results_path, "w", encoding="utf-8") as fp:
        json.dump(results, fp)


if __name__ == "__main__":
    main()
