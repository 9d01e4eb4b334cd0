"""``make run``: the service on the embedded defaults, with the examples published and live.

Starts ``faaspub serve``, builds the runtime base offline if it is missing, publishes the example
functions through the same pipeline a scientist uses, then says what to try. Ctrl-C stops it all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from publisher.config import load_settings
from publisher.oci.store import open_store
from publisher.podman import stop_private_service
from publisher.runtime.base import BASE_REPOSITORY

ROOT = Path(__file__).resolve().parents[1]
FAASPUB = [sys.executable, "-m", "publisher.cli"]
EXAMPLES = ["examples/hello", "examples/cxi-metadata", "examples/chain"]


def say(message: str) -> None:
    print(f"\033[1m==>\033[0m {message}", flush=True)


def faaspub(*args: str) -> None:
    subprocess.run([*FAASPUB, *args], cwd=ROOT, check=True)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"faaspub serve exited with {proc.returncode}; see .faaspub/serve.log")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"faaspub serve did not answer on {url} within {timeout:.0f}s")


def main() -> int:
    os.chdir(ROOT)
    state = ROOT / ".faaspub"
    state.mkdir(exist_ok=True)
    (ROOT / "data" / "incoming").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    settings = load_settings()
    if "3.11" not in open_store(settings).tags(BASE_REPOSITORY):
        say("building the runtime base image from Debian packages (once)")
        faaspub("runtime", "build-base", "--python", "3.11")
    url = settings.server.base_url  # FAASPUB_SERVER__LISTEN moves it off 8080 (benchmarks do)
    say(f"starting faaspub serve on {url}")
    with open(state / "serve.log", "ab") as log:  # the child keeps its own copy of the descriptor
        server = subprocess.Popen([*FAASPUB, "serve"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, server)
        for example in EXAMPLES:
            if (ROOT / example).is_dir():
                say(f"publishing {example}")
                faaspub("publish", example)
        say(f"ready in {time.monotonic() - started:.0f}s. Try:")
        print(
            "\n"
            "  cp examples/hello/README.md data/incoming/hello.txt   # a storage event runs hello\n"
            f"  open {url:<52} # functions, versions, activations\n"
            '  .venv/bin/faaspub invoke hello --data \'{"name": "you"}\'\n'
            "  .venv/bin/faaspub logs hello\n"
            "\n"
            "Ctrl-C stops the service (log: .faaspub/serve.log).\n",
            flush=True,
        )
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        if stop_private_service(settings):
            say("stopped faaspub's private podman service")
    return 0


if __name__ == "__main__":
    sys.exit(main())
