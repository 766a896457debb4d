"""Running BLAST+ programs: argument lists only, a time limit, and no orphans."""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("blast_core.blast.programs")

_PR_SET_PDEATHSIG = 1


class ToolError(RuntimeError):
    """A BLAST+ program failed; `message` is its own explanation (stderr)."""

    def __init__(self, program: str, message: str, returncode: int | None):
        super().__init__(f"{program}: {message}")
        self.program = program
        self.message = message
        self.returncode = returncode


class ToolTimeout(ToolError):
    pass


class ToolStopped(ToolError):
    """The program was killed because its StopCheck said so (its job was cancelled), after
    using `cpu_seconds` of CPU time."""

    def __init__(self, program: str, cpu_seconds: float):
        super().__init__(program, "stopped on request", None)
        self.cpu_seconds = cpu_seconds


def die_with_parent() -> None:
    """In the child before exec: the kernel kills it when the worker dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def run_tool(args: list[str], timeout: float, cwd: str | None = None,
             env: dict[str, str] | None = None) -> str:
    """Run a program (never through a shell) and return its standard output; `env` adds to
    this process's environment."""
    return run_measured(args, timeout, cwd, env).stdout


@dataclass(frozen=True)
class ToolRun:
    stdout: str
    cpu_seconds: float  # user + system time of the program and its threads


@dataclass(frozen=True)
class StopCheck:
    """Asked every `interval` seconds while a program runs: `should_stop()` true kills it."""

    should_stop: Callable[[], bool]
    interval: float


def run_measured(args: list[str], timeout: float, cwd: str | None = None,
                 env: dict[str, str] | None = None, stop: StopCheck | None = None) -> ToolRun:
    """`run_tool`, also returning the CPU time the program used: its own resource usage from
    `wait4`, not the process-wide RUSAGE_CHILDREN that other threads' children also add to.
    With `stop`, a watcher kills the program when asked to (raising ToolStopped).

    Output goes to temporary files, so that nothing waits on pipes; the child is reaped here
    (never by `subprocess`), and the watcher kills it only while it is still unreaped."""
    program = args[0].rsplit("/", 1)[-1]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            child = subprocess.Popen(
                args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env={**os.environ, **env} if env else None,
                preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
        except FileNotFoundError:
            raise ToolError(program, f"program not found: {args[0]}", None) from None
        exited = threading.Event()
        lock, killed = threading.Lock(), []

        def watch() -> None:
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if exited.wait(min(left, stop.interval) if stop else left):
                    return
                reason = ("timeout" if time.monotonic() >= deadline
                          else "stopped" if stop and _asked_to_stop(stop) else None)
                if reason:
                    with lock:
                        if not exited.is_set():
                            killed.append(reason)
                            os.kill(child.pid, signal.SIGKILL)
                    return

        watcher = threading.Thread(target=watch, daemon=True, name=f"watch-{program}")
        watcher.start()
        try:
            os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
            with lock:
                exited.set()
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            exited.set()
            watcher.join()
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait
        if killed == ["timeout"]:
            raise ToolTimeout(program, f"took longer than the limit of {timeout:g} s", None)
        if killed == ["stopped"]:
            raise ToolStopped(program, usage.ru_utime + usage.ru_stime)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if child.returncode != 0:
        message = failure_reason(stderr) or f"exit code {child.returncode}"
        raise ToolError(program, message, child.returncode)
    return ToolRun(stdout, usage.ru_utime + usage.ru_stime)


MAX_REASON_CHARS = 2000
_USAGE_START = re.compile(r"^USAGE\s*$")
_USAGE_END = re.compile(r"^=+\s*$")
_SOURCE_LOCATION = re.compile(r'^T\d+ "[^"]*", line \d+: ')  # a C++ exception's origin
_EXCEPTION_CLASS = re.compile(r"\(C\w+::e\w+\)\s*")  # (CArgException::eConvert)
_ERROR_LINE = re.compile(r"\berror\b", re.IGNORECASE)
_BOILERPLATE = frozenset({"Please refer to the BLAST+ user manual."})


def failure_reason(stderr: str) -> str:
    """What a BLAST+ program says went wrong, for a user to read: its `Error:` lines (and
    BLAST's own `... error:` lines), one after the other.

    On a bad argument BLAST+ prints its whole usage text (about 3,000 characters, from `USAGE`
    to a line of `=`) before the lines that say what is wrong, and each argument error twice,
    once with its C++ exception class; both are dropped. Warnings are kept only when no line
    speaks of an error, so that the error is never cut off behind them."""
    lines, in_usage = [], False
    for raw in stderr.splitlines():
        line = raw.strip()
        if _USAGE_START.match(line):
            in_usage = True
        elif in_usage:
            in_usage = not _USAGE_END.match(line)
        elif line and line not in _BOILERPLATE:
            line = _EXCEPTION_CLASS.sub("", _SOURCE_LOCATION.sub("", line))
            lines.append(" ".join(line.split()))
    errors = [line for line in lines if _ERROR_LINE.search(line)] or lines
    told = [line for line in errors if not line.endswith(":")] or errors  # "...Exception:"
    reason = "; ".join(dict.fromkeys(told))
    return reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS - 3] + "..."


def _asked_to_stop(stop: StopCheck) -> bool:
    """A failing check (say, storage unreachable) lets the program run on."""
    try:
        return stop.should_stop()
    except Exception as error:
        log.warning("cannot check whether to stop (%s); carrying on", type(error).__name__)
        return False


def stop_processes(processes: list[subprocess.Popen], timeout: float = 10.0) -> None:
    """Ask each process to stop (SIGTERM), give them `timeout` seconds together, then kill
    what is left."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
