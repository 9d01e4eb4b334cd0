"""``faaspub db upgrade``: schema migrations as a step of their own (a deployment's migration job)."""

from __future__ import annotations

import click

from publisher.cli.common import config_option, err, json_option, print_json
from publisher.config import load_settings
from publisher.errors import FaaspubError


@click.group()
def db() -> None:
    """The service database."""


@db.command("upgrade")
@config_option
@json_option
def upgrade_command(config: str | None, as_json: bool) -> None:
    """Upgrade the schema to the newest revision of every part (serve and worker also do it at start)."""
    from sqlalchemy.exc import OperationalError

    from publisher.db.engine import make_engine, upgrade

    engine = make_engine(load_settings(config).database.url)
    try:
        before, after = upgrade(engine)
    except OperationalError as exc:
        # The driver's own words (host, port, database name), never the URL, which may hold a password.
        raise FaaspubError(f"cannot upgrade the database: {' '.join(str(exc.orig).split())}") from None
    finally:
        engine.dispose()
    if as_json:
        print_json({"before": before, "after": after, "upgraded": before != after})
        return
    # Revisions only: the database URL may carry a password.
    was = f"was {', '.join(before)}" if before else "was empty"
    err.print(
        f"database schema at {', '.join(after)} ({was})"
        if before != after
        else f"database schema already at {', '.join(after)}"
    )
