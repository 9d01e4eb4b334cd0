"""A newcomer's machine for the first-run tests: one ``FAASPUB_HOME``, commands run from any folder.

Every command is a real ``faaspub`` process (``python -m publisher.cli``) started in the folder the
README says, with only ``FAASPUB_HOME`` telling it where the machine's state is, as ``HOME`` would.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from publisher.podman import mounts_under
from tests.e2e.stack import FAASPUB, clean_env


def run(
    home: Path, cwd: Path, *args: str, timeout: float = 600, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    """``faaspub ARGS`` in ``cwd`` on the machine whose state is ``home`` (plus ``env`` settings)."""
    proc = subprocess.run(
        [*FAASPUB, *args],
        cwd=cwd,
        env=clean_env({"FAASPUB_HOME": str(home), **env}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"faaspub {' '.join(args)} in {cwd} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
        )
    return proc


def processes_of(state: Path) -> list[str]:
    """Processes that belong to the machine at ``state``: run with its ``FAASPUB_HOME``, naming it on
    their command line (podman, conmon), or running inside it (a container's root or cwd)."""
    marker = str(state)
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes().split(b"\0")
            places = [os.readlink(proc / "root"), os.readlink(proc / "cwd")]
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        if (
            marker in cmdline
            or f"FAASPUB_HOME={marker}".encode() in environ
            or any(p.startswith(marker) for p in places)
        ):
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def leftovers(state: Path) -> list[str]:
    """Processes and mounts of the machine at ``state`` still there (empty once it is all stopped)."""
    return processes_of(state) + [f"mount {m}" for m in mounts_under(state.resolve())]


def stop_session(proc: subprocess.Popen[str], signum: int = signal.SIGTERM, timeout: float = 90) -> int:
    """Signal the whole session ``proc`` leads, as a process manager or a closed terminal does."""
    if proc.poll() is None:
        os.killpg(proc.pid, signum)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(
                f"{proc.args} did not stop within {timeout:.0f}s of {signal.Signals(signum).name}"
            ) from None
    return proc.returncode
