"""Run every benchmark (``bench/<area>.py`` exposing ``run(quick) -> list[dict]``) and write the results.

``bench/results.json`` holds one record per metric (id where an issue named one, metric, value, unit,
command, and where a peer ran side by side: peer, peer_value, ratio; goal where the issue set one).
The ``id`` is stable (e.g. ``scale.search_rps``), so checks find a figure whatever its wording; ids
are unique in a run. Every record says when it was measured and the load average then.
``bench/RESULTS.md`` is the same as a table for the README. Running some areas (``bench/run.py s3``)
refreshes their records and keeps the others'.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
AREAS = (
    "runtime",
    "oci",
    "build",
    "backends",
    "triggers",
    "s3",
    "archive",
    "webhooks",
    "catalogue",
    "ci",
    "e2e",
    "dev",
    "security",
)


def _load(area: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_{area}", HERE / f"{area}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def write_markdown(results: list[dict[str, Any]], path: Path) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}); `make bench` writes this file. "
        "The load column is the 1-minute load average when the figure was taken (the cores are shared).",
        "",
        "| area | id | metric | value | unit | peer | peer value | ratio | goal | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    columns = ("area", "id", "metric", "value", "unit", "peer", "peer_value", "ratio", "goal", "load_avg_1m")
    lines += ["| " + " | ".join(_fmt(r.get(k)) for k in columns) + " |" for r in results]
    failed = [r for r in results if r.get("error")]
    if failed:
        lines += ["", "Benchmarks that could not run:", ""]
        lines += [f"- {r['area']}: {r['error']}" for r in failed]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def with_earlier(results: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """``results`` plus the records of the areas that did not run this time, from ``path``."""
    ran = {r["area"] for r in results}
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    kept = [r for r in earlier if r.get("area") not in ran]
    order = {area: i for i, area in enumerate(AREAS)}
    return sorted([*kept, *results], key=lambda r: order.get(r["area"], len(AREAS)))


def check_ids(results: list[dict[str, Any]]) -> None:
    """Refuse a run in which two records claim the same ``id``: outside checks look figures up by it."""
    seen: dict[str, str] = {}
    for record in results:
        ident = record.get("id")
        if ident is None:
            continue
        if ident in seen:
            raise ValueError(f"bench id {ident!r} is used by {seen[ident]!r} and {record['metric']!r}")
        seen[ident] = record["metric"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="full sample sizes (slower)")
    parser.add_argument("areas", nargs="*", default=list(AREAS))
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    for area in args.areas:
        if not (HERE / f"{area}.py").is_file():
            continue
        started = time.monotonic()
        print(f"bench: {area} …", flush=True)
        try:
            records = _load(area).run(quick=not args.full)
            # The machine is shared: every figure says when it was taken and how busy the cores were.
            stamp = {"measured": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "load_avg_1m": _load_avg()}
            results += [{"area": area, **stamp, **record} for record in records]
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            results.append({"area": area, "metric": "error", "error": f"{type(exc).__name__}: {exc}"})
        print(f"bench: {area} done in {time.monotonic() - started:.1f}s", flush=True)
    merged = with_earlier(results, HERE / "results.json")
    check_ids(merged)
    (HERE / "results.json").write_text(json.dumps(merged, indent=2, default=str) + "\n", encoding="utf-8")
    write_markdown(merged, HERE / "RESULTS.md")
    print(f"wrote {HERE / 'results.json'} and {HERE / 'RESULTS.md'}")
    return 1 if any(r.get("error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
