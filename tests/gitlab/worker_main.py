"""Worker subprocess for the fault tests: ``python -m tests.gitlab.worker_main CONFIG LEASE_S``."""

from __future__ import annotations

import signal
import sys
import threading

from publisher.config import load_settings
from publisher.core.context import Context
from publisher.gitlab.worker import run_worker
from publisher.logs import configure_logging
from tests.gitlab.parts import use_recording_parts


def main() -> None:
    use_recording_parts()
    configure_logging("json")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run_worker(Context(load_settings(sys.argv[1])), stop, poll_s=0.05, lease_s=float(sys.argv[2]))


if __name__ == "__main__":
    main()
