"""``faaspub dev [DIR]``: on every save, build, test and put a development version live.

Each round goes through :meth:`publisher.core.pipeline.Pipeline.develop` with a warm test runner
(:class:`publisher.tester.warm.WarmTester`), so a code-only change is live in well under a second.
A round whose tests fail leaves the version that was live running, and says why.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType

import click

from publisher.cli.common import config_option, err, json_option, out
from publisher.core.context import Context
from publisher.core.pipeline import DevRound, Pipeline
from publisher.errors import FaaspubError
from publisher.manifest.problems import ProblemsError
from publisher.tester.warm import WarmTester
from publisher.watch import FolderWatch

# Lines of each failure's detail printed under it (the JUnit report has everything).
DETAIL_LINES = 12


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _show(round_: DevRound, as_json: bool) -> None:
    if as_json:
        print(json.dumps(round_.as_dict(), sort_keys=True, default=str), flush=True)
        return
    tests = round_.report.summary_line()
    if round_.live:
        err.print(
            f"live: {round_.function} {round_.version} ({tests}) in {round_.seconds:.2f} s", markup=False
        )
        out.print(f"  invoke {json.dumps(round_.given)} -> {json.dumps(round_.result)}", markup=False)
        return
    kept = f"{round_.previous} stays live" if round_.previous else "nothing is live yet"
    err.print(f"failed: {round_.function} {round_.version}: {round_.error}; {kept}", markup=False)
    for failure in round_.report.failures:
        first, *detail = failure.splitlines()
        err.print(f"  FAILED {first}", markup=False)
        for line in [d for d in detail if d.strip()][:DETAIL_LINES]:
            err.print(f"    {line}", markup=False)


def _error(folder: Path, exc: FaaspubError, as_json: bool) -> None:
    problems = exc.problems if isinstance(exc, ProblemsError) else []
    if as_json:
        print(json.dumps({"folder": str(folder), "live": False, "error": str(exc)}), flush=True)
        return
    for line in [str(p) for p in problems] or [str(exc)]:
        err.print(f"error: {line}", markup=False)
    err.print("the version that was live stays live; waiting for the next save", markup=False)


@click.command()
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--once", is_flag=True, help="One round, then exit (0 when the version went live).")
@config_option
@json_option
def dev(directory: str, once: bool, config: str | None, as_json: bool) -> None:
    """Watch the folder; on every save rebuild, test and redeploy a development version."""
    folder = Path(directory).resolve()
    context = Context.from_config(config)
    pipeline = Pipeline(context)
    tester = WarmTester(context.settings)
    previous: dict[str, str] = {}  # function -> the development version this session put live
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        with FolderWatch(folder) as watch:
            if not as_json:
                err.print(f"watching {folder} (Ctrl-C stops)", markup=False)
            while True:
                try:
                    round_ = pipeline.develop(folder, tester)
                except FaaspubError as exc:
                    _error(folder, exc, as_json)
                    if once:
                        sys.exit(1)
                else:
                    _show(round_, as_json)
                    if round_.live:
                        _retire(pipeline, round_, previous)
                    if once:
                        sys.exit(0 if round_.live else 1)
                watch.wait()
    except KeyboardInterrupt:
        pass
    finally:
        tester.close()
        context.backend.close()


def _retire(pipeline: Pipeline, round_: DevRound, previous: dict[str, str]) -> None:
    """Remove the development version this session put live before (superseded; never a release)."""
    old = previous.get(round_.function)
    previous[round_.function] = round_.version
    if old is not None:
        backend = pipeline.context.backend
        backend.undeploy(pipeline.context.settings.namespace, round_.function, old)
