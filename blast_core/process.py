"""Running BLAST+ programs: argument lists only, a time limit, and no orphans."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

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
    program = args[0].rsplit("/", 1)[-1]
    try:
        completed = subprocess.run(
            args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
            env={**os.environ, **env} if env else None,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
    except subprocess.TimeoutExpired:
        raise ToolTimeout(program, f"took longer than the limit of {timeout:g} s", None) from None
    except FileNotFoundError:
        raise ToolError(program, f"program not found: {args[0]}", None) from None
    if completed.returncode != 0:
        message = " ".join(completed.stderr.split())[:2000] or f"exit code {completed.returncode}"
        raise ToolError(program, message, completed.returncode)
    return completed.stdout
