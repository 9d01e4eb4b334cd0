"""``make run``: the service on the embedded defaults, with the examples published and live.

The state is the user's (``FAASPUB_HOME``, default ``~/.local/share/faaspub``), the same one every
``faaspub`` command finds from any folder, so a second terminal's ``faaspub publish`` reaches this
service. One line per step; the clock starts when ``make run`` started (``FAASPUB_RUN_STARTED``,
install included). SIGINT, SIGTERM and SIGHUP all stop everything it started: the examples being
published, ``faaspub serve``, faaspub's private podman with its containers, and the storage mounts
under the state directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

from publisher.config import Settings, load_settings
from publisher.podman import mounts_under, release_mounts, stop_private_service
from publisher.runtime.base import ensure_base

ROOT = Path(__file__).resolve().parents[1]
FAASPUB = [sys.executable, "-m", "publisher.cli"]
# FAASPUB_RUN_EXAMPLES (comma-separated folders) narrows the set, e.g. for tests of make run itself.
EXAMPLES = os.environ.get("FAASPUB_RUN_EXAMPLES", "examples/hello,examples/cxi-metadata,examples/chain")


class Stop(Exception):
    """A signal asked ``make run`` to stop."""


def say(message: str) -> None:
    arrow = "\033[1m==>\033[0m" if sys.stdout.isatty() else "==>"
    print(f"{arrow} {message}", flush=True)


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


class Run:
    """What ``make run`` started, so that any way out stops all of it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = Path(settings.state_dir).resolve()
        self.server: subprocess.Popen[bytes] | None = None
        self.publishing: list[subprocess.Popen[str]] = []
        self.lock = threading.Lock()
        self.stopping = False

    def serve(self) -> None:
        url = self.settings.server.base_url  # FAASPUB_SERVER__LISTEN moves it off 8080 (tests do)
        log = self.state / "serve.log"
        say(f"starting faaspub serve on {url} (log: {log})")
        with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
            # Its own session: a closed terminal's SIGHUP reaches this script, which stops it in order.
            self.server = subprocess.Popen(
                [*FAASPUB, "serve"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise SystemExit(f"faaspub serve exited with {self.server.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"faaspub serve did not answer on {url} within 60s; see {log}")

    def publish(self, examples: list[str]) -> None:
        """Publish the examples side by side, one line each as it goes live."""
        pythons = sorted({p for e in examples if (p := _python(ROOT / e))})
        for python in pythons:
            if ensure_base(self.settings, python, lambda m: say(m)):
                say(f"python {python} runtime base ready")
        say(f"publishing {', '.join(examples)}")
        pool = ThreadPoolExecutor(max_workers=len(examples))
        try:
            for line in pool.map(self._publish_one, examples):
                say(line)
        finally:
            # On a signal, stop() ends the publishes running; the threads waiting on them then return.
            pool.shutdown(wait=False, cancel_futures=True)

    def _publish_one(self, example: str) -> str:
        started = time.monotonic()
        with self.lock:
            if self.stopping:
                return f"{example}: not published (stopping)"
            proc = subprocess.Popen(
                [*FAASPUB, "publish", example, "--json"],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            self.publishing.append(proc)
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            reason = (stderr.strip().splitlines() or ["no output"])[-1]
            return f"{example}: not published ({reason})"
        printed = json.loads(stdout)
        results = printed if isinstance(printed, list) else [printed]
        live = ", ".join(f"{r['function']} {r['version']}" for r in results)
        return f"live: {live} ({time.monotonic() - started:.0f} s)"

    def stop(self) -> None:
        """Publishing, then the service, then the private podman and its containers, then the mounts."""
        with self.lock:
            self.stopping = True
        for proc in self.publishing:
            _end(proc, signal.SIGTERM, 20)
        if self.server is not None:
            # SIGTERM: the service stops intake, finishes what runs and removes its warm containers.
            _end(self.server, signal.SIGTERM, 30)
        stop_private_service(self.settings)
        release_mounts(self.state)
        left = mounts_under(self.state)
        say("stopped" + (f"; still mounted: {', '.join(map(str, left))}" if left else ""))


def _end(proc: subprocess.Popen[bytes] | subprocess.Popen[str], signum: int, timeout: float) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signum)  # the whole session it started (pip, podman clients …)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _python(folder: Path) -> str | None:
    """The python version of every function under ``folder`` (its base is built before publishing)."""
    from publisher.manifest.load import find_functions, load_manifest

    for found in find_functions(folder):
        return load_manifest(found).python_version
    return None


def _started() -> float:
    """When ``make run`` started (set by the Makefile before installing), else now."""
    try:
        return float(os.environ["FAASPUB_RUN_STARTED"])
    except (KeyError, ValueError):
        return time.time()


# What make run (and the service it starts) keeps in the state directory; `make clean` removes these
# and nothing else, whatever state_dir points at.
STATE_ENTRIES = (
    "faaspub.db",
    "faaspub.db-wal",
    "faaspub.db-shm",
    "oci",
    "data",
    "podman",
    "serve.log",
    "gitlab",
    "rootfs",
)


def clean() -> int:
    """``make clean``: stop what make run started, then remove its state."""
    settings = load_settings()
    state = Path(settings.state_dir).resolve()
    stop_private_service(settings)
    release_mounts(state)
    for name in STATE_ENTRIES:
        path = state / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        state.rmdir()  # only when nothing else lives there
    say(f"removed faaspub's state in {state}")
    return 0


def main() -> int:
    if sys.argv[1:] == ["--clean"]:
        return clean()
    started = _started()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _stop)
    settings = load_settings()
    run = Run(settings)
    run.state.mkdir(parents=True, exist_ok=True)
    incoming = Path(settings.storage.local.root).resolve() / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    try:
        run.serve()
        run.publish([e for e in EXAMPLES.split(",") if (ROOT / e).is_dir()])
        say(f"ready in {time.time() - started:.0f} s (since make run started, install included). Try:")
        url = settings.server.base_url
        print(
            "\n"
            f"  cp examples/hello/README.md {incoming}/hello.txt   # a storage event runs hello\n"
            f"  open {url}   # the catalogue: functions, versions, activations\n"
            '  .venv/bin/faaspub invoke hello --data \'{"name": "you"}\'\n'
            "  .venv/bin/faaspub logs hello\n"
            "  .venv/bin/faaspub status                      # where everything is\n"
            "  source .venv/bin/activate && faaspub init my-fn && cd my-fn && faaspub dev   # your own\n"
            "\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        assert run.server is not None
        run.server.wait()
        say(f"faaspub serve exited with {run.server.returncode}; see {run.state / 'serve.log'}")
        return 1
    except (Stop, KeyboardInterrupt) as why:
        say(f"stopping ({why or 'SIGINT'})")
        return 0
    finally:
        # A second signal must not cut the clean-up short: it is bounded by the timeouts above.
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        run.stop()


if __name__ == "__main__":
    sys.exit(main())
