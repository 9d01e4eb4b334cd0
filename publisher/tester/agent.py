"""The warm test runner inside a function's test image, for ``faaspub dev``: pytest imported once,
then one forked child per run, so a run costs milliseconds instead of an interpreter and a container.

:class:`publisher.tester.warm.WarmTester` starts it as ``python3 -c <this file>`` (standard library
and the image's pytest only; it runs on the image's Python). It listens on
``127.0.0.1:$FAASPUB_AGENT_PORT``; ``POST /run`` takes a JSON document::

    {"files": {"relative/path": "<base64>", ...}, "tests": "tests", "command": null | "sh command",
     "examples": [input, ...], "timeout": seconds}

and answers ``{"status": exit status, "junit": XML or "", "output": str, "examples": [{"result": …}
or {"error": "…"}], "seconds": float}``. Each run unpacks into a fresh folder under ``/tmp`` and runs
in its own process group, so nothing one run imports or starts survives into the next.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

OUTPUT_TAIL = 8000


def unpack(files: dict[str, str], root: str) -> None:
    for rel, data in files.items():
        parts = rel.split("/")
        if rel.startswith("/") or ".." in parts:
            raise ValueError(f"refusing path {rel!r}")
        target = os.path.join(root, *parts)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as out:
            out.write(base64.b64decode(data))


def examples(inputs: list[Any]) -> list[dict[str, Any]]:
    """Each example's result from the handler, loaded the way the runtime proxy loads it."""
    from faaspub_runtime import loader

    try:
        handler = loader.load({})
    except Exception as exc:
        return [{"error": f"the handler could not be loaded: {exc}"} for _ in inputs]
    results: list[dict[str, Any]] = []
    for value in inputs:
        try:
            results.append({"result": json.loads(json.dumps(handler(dict(value))))})
        except BaseException as exc:
            results.append({"error": f"{type(exc).__name__}: {exc}"})
    return results


def child(doc: dict[str, Any], work: str) -> int:
    """Runs in the forked process: the examples, then pytest (or the tests command) in ``work``."""
    os.setpgid(0, 0)
    out = os.open(os.path.join(work, ".faaspub-output"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.chdir(work)
    sys.path.insert(0, work)
    os.environ["FAASPUB_ACTION_DIR"] = work
    with open(os.path.join(work, ".faaspub-examples.json"), "w") as fh:
        json.dump(examples(doc.get("examples") or []), fh)
    if doc.get("command"):
        os.execv("/bin/sh", ["/bin/sh", "-c", doc["command"]])
    junit = os.path.join(work, ".faaspub-junit.xml")
    return int(
        pytest.main(["-p", "no:cacheprovider", "-q", f"--junitxml={junit}", doc.get("tests") or "tests"])
    )


def run(doc: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="run-")
    try:
        unpack(doc["files"], work)
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                code = child(doc, work)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        status = wait(pid, float(doc.get("timeout") or 600))
        return {
            "status": status,
            "junit": read(os.path.join(work, ".faaspub-junit.xml")),
            "output": read(os.path.join(work, ".faaspub-output"))[-OUTPUT_TAIL:],
            "examples": json.loads(read(os.path.join(work, ".faaspub-examples.json")) or "[]"),
            "seconds": time.monotonic() - started,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def wait(pid: int, timeout: float) -> int:
    """The child's exit status; past ``timeout`` its whole process group is killed (status -9)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -9
        time.sleep(0.002)


def read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        if self.path != "/run":
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            answer = json.dumps(run(json.loads(self.rfile.read(length)))).encode()
            code = 200
        except Exception:
            answer = json.dumps({"error": traceback.format_exc()[-OUTPUT_TAIL:]}).encode()
            code = 500
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    server = HTTPServer(("127.0.0.1", int(os.environ["FAASPUB_AGENT_PORT"])), Handler)
    print("faaspub test agent ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
