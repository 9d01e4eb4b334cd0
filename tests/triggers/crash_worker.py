"""The event consumer process the crash test kills: ``python -m tests.triggers.crash_worker DIR``.

It runs the real :func:`publisher.triggers.runner.run_triggers` (local directory source, intake,
deliverers) with the recording backend, on the database and storage root under ``DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from publisher.core.context import Context
from publisher.triggers.delivery import Deliverer
from publisher.triggers.runner import intake_for, run_triggers
from tests.triggers.conftest import make_settings
from tests.triggers.recording import RecordingBackend


def main(directory: str) -> None:
    context = Context(make_settings(Path(directory)))
    backend = RecordingBackend(context.sessions, delay_s=0.01)
    context.__dict__["backend"] = backend
    # A short lease, so the next process takes over the rows a killed one had leased.
    deliverer = Deliverer(context.sessions, backend, lease_s=1.0, wakeup=intake_for(context).wakeup)
    run_triggers(context, lambda: False, deliverer=deliverer)


if __name__ == "__main__":
    main(sys.argv[1])
