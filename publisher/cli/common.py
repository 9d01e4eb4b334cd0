"""Options and output helpers shared by every CLI verb."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])

# Progress and messages go to stderr so that stdout stays machine-readable with --json. Nothing is
# wrapped: a message is one line whatever the terminal width (or none), as scripts and logs expect.
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


@contextmanager
def progress_status(start: str) -> Iterator[Callable[[str], None]]:
    """A progress callback shown as one updating status line on a terminal (nothing otherwise)."""
    with err.status(start) as status:
        yield lambda message: status.update(message)


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "config",
        type=click.Path(dir_okay=False),
        default=None,
        help="TOML configuration file (default: $FAASPUB_CONFIG, ./faaspub.toml, "
        "~/.config/faaspub/faaspub.toml, the first that exists).",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON result.")(func)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
