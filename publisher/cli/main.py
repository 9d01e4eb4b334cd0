"""The ``faaspub`` entry point: a click group whose verbs are imported only when used (fast start)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from publisher import __version__
from publisher.cli.common import err
from publisher.errors import FaaspubError
from publisher.manifest.problems import ProblemsError

# verb -> "module:attribute"; each module holds one verb (or group) and its helpers.
VERBS = {
    "init": "publisher.cli.authoring:init",
    "validate": "publisher.cli.authoring:validate",
    "schema": "publisher.cli.authoring:schema",
    "build": "publisher.cli.build:build",
    "test": "publisher.cli.build:test",
    "publish": "publisher.cli.publish:publish",
    "dev": "publisher.cli.dev:dev",
    "status": "publisher.cli.status:status",
    "serve": "publisher.cli.serve:serve",
    "invoke": "publisher.cli.operate:invoke",
    "ls": "publisher.cli.operate:ls",
    "logs": "publisher.cli.operate:logs",
    "rollback": "publisher.cli.operate:rollback",
    "events": "publisher.cli.events:events",
    "runtime": "publisher.cli.runtime:runtime",
    "gitlab": "publisher.cli.gitlab:gitlab",
    "worker": "publisher.cli.gitlab:worker",
    "token": "publisher.cli.token:token",
    "release-info": "publisher.cli.release:release_info",
    "verify": "publisher.cli.verify:verify",
    "db": "publisher.cli.db:db",
}


class LazyGroup(click.Group):
    """Imports a verb's module only when that verb runs, so ``faaspub validate`` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(VERBS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        spec = VERBS.get(name)
        if spec is None:
            return None
        module, _, attr = spec.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="faaspub")
def cli() -> None:
    """faaspub: publish scientific functions as tested, citable, storage-triggered FaaS actions."""


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; bad input ends with a one-line reason on stderr and a non-zero exit."""
    try:
        return cli.main(args=argv, prog_name="faaspub", standalone_mode=False)
    except ProblemsError as exc:
        for problem in exc.problems:
            err.print(f"error: {problem}", markup=False)
        sys.exit(1)
    except FaaspubError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("FAASPUB_DEBUG"):
            raise
        err.print(
            f"error: internal error: {type(exc).__name__}: {exc} (set FAASPUB_DEBUG=1 for details)",
            markup=False,
        )
        sys.exit(2)
