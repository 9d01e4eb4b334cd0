"""Backend errors that the pipeline treats differently from bad input."""

from __future__ import annotations

from publisher.errors import FaaspubError


class BackendUnavailable(FaaspubError):
    """The backend could not be reached after retries; nothing was lost and the step can be re-run.

    Deploy, bind and rollback are idempotent, so a release that stopped here resumes by running the
    same step again (the pipeline keeps the job queued).
    """

    resumable = True
