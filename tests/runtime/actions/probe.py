"""Handlers for the runtime conformance suite; one function per behaviour under test.

This folder is the function's ``/action`` directory: the in-process suite points
``FAASPUB_ACTION_DIR`` at it, the container suite copies it into the image.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from typing import Any


def baked(params: dict[str, Any]) -> dict[str, Any]:
    return {"params": params, "greeting": os.environ.get("PROBE_GREETING")}


def echo(params: dict[str, Any]) -> dict[str, Any]:
    return {"params": params}


def env(params: dict[str, Any]) -> dict[str, Any]:
    names = set(params.get("names", []))
    return {"env": {k: v for k, v in os.environ.items() if k.startswith("__OW_") or k in names}}


def returns(params: dict[str, Any]) -> Any:
    return params.get("result")


def not_json(params: dict[str, Any]) -> Any:
    return {"set": {1, 2}} if params.get("kind") == "set" else {"nan": float("nan")}


def fail(params: dict[str, Any]) -> dict[str, Any]:
    raise ValueError(params.get("message", "boom"))


def exits(params: dict[str, Any]) -> dict[str, Any]:
    if "code" in params:
        sys.exit(params["code"])
    return {"survived": True}


def sleep(params: dict[str, Any]) -> dict[str, Any]:
    start = time.monotonic()
    time.sleep(params.get("seconds", 0.3))
    return {"start": start, "end": time.monotonic()}


def hang(params: dict[str, Any]) -> dict[str, Any]:
    threading.Event().wait()
    return {}


def shout(params: dict[str, Any]) -> dict[str, Any]:
    line = "y" * 1023
    lines = params.get("megabytes", 5) * 1024
    for _ in range(lines):
        print(line)
    print("shout done", file=sys.stderr)
    return {"lines": lines}


async def later(params: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"awaited": params}


def talk(params: dict[str, Any]) -> dict[str, Any]:
    print(params.get("out", "to stdout"))
    print(params.get("err", "to stderr"), file=sys.stderr)
    return {}


not_callable = {"handler": False}
