"""Running BLAST+ programs: argument lists only, a time limit, and no orphans."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass

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


def run_measured(args: list[str], timeout: float, cwd: str | None = None,
                 env: dict[str, str] | None = None) -> ToolRun:
    """`run_tool`, also returning the CPU time the program used: its own resource usage from
    `wait4`, not the process-wide RUSAGE_CHILDREN that other threads' children also add to.

    Output goes to temporary files, so that nothing waits on pipes; the child is reaped here
    (never by `subprocess`), and the time limit kills it only while it is still unreaped."""
    program = args[0].rsplit("/", 1)[-1]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            child = subprocess.Popen(
                args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env={**os.environ, **env} if env else None,
                preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
        except FileNotFoundError:
            raise ToolError(program, f"program not found: {args[0]}", None) from None
        lock, state = threading.Lock(), {"exited": False, "killed": False}

        def kill() -> None:
            with lock:
                if not state["exited"]:
                    state["killed"] = True
                    os.kill(child.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        try:
            os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
            with lock:
                state["exited"] = True
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            timer.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait
        if state["killed"]:
            raise ToolTimeout(program, f"took longer than the limit of {timeout:g} s", None)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if child.returncode != 0:
        message = " ".join(stderr.split())[:2000] or f"exit code {child.returncode}"
        raise ToolError(program, message, child.returncode)
    return ToolRun(stdout, usage.ru_utime + usage.ru_stime)


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
