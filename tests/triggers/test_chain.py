"""The examples/chain pipeline through the real bridge: a CSV's summary triggers the index function."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from publisher.core.context import Context
from publisher.manifest.model import Manifest
from publisher.triggers.delivery import Deliverer
from publisher.triggers.runner import intake_for, run_triggers
from tests.triggers.conftest import Publish, wait_for

CHAIN = Path(__file__).resolve().parents[2] / "examples" / "chain"


def handler(function: str) -> tuple[Manifest, Callable[[dict[str, Any]], Any]]:
    import yaml

    folder = CHAIN / function
    manifest = Manifest.model_validate(yaml.safe_load((folder / "function.yaml").read_text()))
    spec = importlib.util.spec_from_file_location(
        f"chain_{manifest.module}", folder / f"{manifest.module}.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return manifest, getattr(module, manifest.function)


class InProcessBackend:
    """Runs the example handlers in this process, as the local backend would run their images."""

    name = "in-process"

    def __init__(self, handlers: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
        self.handlers = handlers
        self.results: list[tuple[str, Any]] = []

    def fire(self, namespace: str, function: str, event: Mapping[str, Any]) -> str:
        self.results.append((function, self.handlers[function](dict(event))))
        return str(event["id"])


def test_summary_output_triggers_the_index(context: Context, publish: Publish) -> None:
    handlers = {}
    for function in ("chain-summary", "chain-index"):
        manifest, main = handler(function)
        handlers[manifest.name] = main
        publish(manifest.name, [t.storage.model_dump() for t in manifest.triggers if t.storage])
    backend = InProcessBackend(handlers)
    incoming = Path(context.settings.storage.local.root) / "incoming"
    incoming.mkdir(parents=True)
    stop = threading.Event()
    deliverer = Deliverer(context.sessions, backend, wakeup=intake_for(context).wakeup)
    consumer = threading.Thread(target=run_triggers, args=(context, stop.is_set, deliverer), daemon=True)
    consumer.start()
    try:
        (incoming / "run7.csv").write_text("energy,detector\n1.5,A\n2.5,B\n")
        index = incoming / "index.jsonl"
        wait_for(index.exists, timeout=15, what="index.jsonl written by chain-index")
    finally:
        stop.set()
        consumer.join(timeout=10)
    lines = [json.loads(line) for line in index.read_text().splitlines()]
    assert [(line["summary"], line["rows"]) for line in lines] == [
        (str(incoming / "run7.csv.summary.json"), 2)
    ]
    assert [function for function, _ in backend.results] == ["chain-summary", "chain-index"]
