"""``faaspub events``: storage-event operations (replay / backfill, dead letters)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from publisher.cli.common import config_option, err, json_option, out, print_json
from publisher.core.context import Context
from publisher.errors import FaaspubError


def parse_since(value: str | None) -> datetime | None:
    """ISO 8601 date or date-time (``2026-01-31``, ``2026-01-31T12:00:00Z``); naive means UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FaaspubError(
            f"--since {value!r} is not a date or date-time",
            hint="write it like 2026-01-31 or 2026-01-31T12:00:00Z",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@click.group()
def events() -> None:
    """Storage events: replay existing files, inspect dead letters."""


@events.command()
@click.option("--function", "function", required=True, help="Function name.")
@click.option(
    "--version", "version", default=None, help="Version to run (default: what the alias points at)."
)
@click.option("--path", "path", required=True, help="Directory to reprocess, e.g. /incoming.")
@click.option("--since", "since", default=None, help="Only files modified at or after this date-time.")
@click.option(
    "--source", type=click.Choice(["local", "dcache"]), default=None, help="Default: the binding's."
)
@click.option("--no-wait", is_flag=True, help="Only queue; a running service delivers.")
@config_option
@json_option
def replay(
    function: str,
    version: str | None,
    path: str,
    since: str | None,
    source: str | None,
    no_wait: bool,
    config: str | None,
    as_json: bool,
) -> None:
    """Reprocess existing files with a function version (each file at most once per version)."""
    from publisher.triggers.replay import drain
    from publisher.triggers.replay import replay as run_replay

    context = Context.from_config(config)
    report = run_replay(context, function, path, version=version, since=parse_since(since), source=source)
    if not no_wait and report.queued:
        err.print(f"delivering {report.queued} event(s) to {function}@{report.version} …")
        report = drain(context, report)
    if as_json:
        print_json(report.as_dict())
        return
    out.print(
        f"{function}@{report.version}: {report.scanned} file(s) scanned under {report.path}, "
        f"{report.queued} queued, {report.skipped} already processed by this version"
        + ("" if no_wait else f", {report.delivered} delivered, {report.dead} dead")
    )


@events.command("dead")
@click.option("--function", "function", default=None, help="Only this function.")
@click.option("--limit", default=50, show_default=True)
@config_option
@json_option
def dead(function: str | None, limit: int, config: str | None, as_json: bool) -> None:
    """List deliveries that gave up (the dead-letter state)."""
    from publisher.triggers.store import dead_letters

    context = Context.from_config(config)
    with context.sessions() as session:
        letters = dead_letters(session, function=function, limit=limit)
    if as_json:
        print_json([letter.as_dict() for letter in letters])
        return
    for letter in letters:
        out.print(
            f"{letter.id}\t{letter.function}@{letter.version}\t{letter.path}\t{letter.last_error}",
            markup=False,
        )
