"""The runtime protocol conformance cases, written once against a ``start_proxy`` fixture.

Subclass :class:`ConformanceSuite` in a test module that provides ``start_proxy`` (see
``endpoint.StartProxy``): ``test_proxy_conformance.py`` runs the proxy as a local process,
``test_container_conformance.py`` runs it inside a function image with podman.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import zipfile
from typing import Any

import pytest
from runtime_endpoint import Endpoint, StartProxy

MARKER = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
NOT_A_RESULT = "The action did not return a dictionary or array."
EXIT_TIMED_OUT = 75
# The shape of an OpenWhisk namespace key (uuid:key); made up for the test.
API_KEY = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:" + "k3yM4t3r1al" * 6


def _zip(files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return base64.b64encode(buffer.getvalue()).decode()


def _context(**overrides: Any) -> dict[str, Any]:
    context = {
        "namespace": "guest",
        "action_name": "/guest/probe",
        "api_host": "https://openwhisk.example.org",
        "api_key": API_KEY,
        "activation_id": "a1b2c3d4e5f6",
        "transaction_id": "tid-42",
        "deadline": str(int((time.time() + 60) * 1000)),
    }
    return {**context, **overrides}


def _count(text: str) -> int:
    return text.count(MARKER + "\n")


def _markers(endpoint: Endpoint, expected: int) -> tuple[str, str]:
    """Wait until both streams carry ``expected`` markers (container logs may lag a little)."""
    for log in (endpoint.out, endpoint.err):
        log.wait_for(lambda data: data.count(MARKER.encode() + b"\n") >= expected, timeout=10)
    return endpoint.out.text(), endpoint.err.text()


class ConformanceSuite:
    """Every protocol rule of contracts.md B.5 plus faaspub's own (limits, timeouts, env hygiene)."""

    # --- init -----------------------------------------------------------------------------------

    def test_baked_handler_from_handler_json(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler=None)
        assert proxy.init().status == 200
        answer = proxy.run({"x": 1}, _context())
        assert answer.status == 200, answer.raw
        assert answer.json == {"params": {"x": 1}, "greeting": "hello from handler.json"}

    def test_handler_variable_overrides_handler_json(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="probe:echo")
        assert proxy.init().status == 200
        assert proxy.run({"x": 1}).json == {"params": {"x": 1}}

    def test_second_init_is_refused(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy()
        assert proxy.init().status == 200
        again = proxy.init({"code": "def main(p):\n    return {}\n"})
        assert again.status == 403
        assert again.json == {"error": "Cannot initialize the action more than once."}
        assert proxy.run({"still": "echo"}).json == {"params": {"still": "echo"}}

    def test_init_with_plain_code(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy()
        code = "def handle(p):\n    return {'sum': p['a'] + p['b']}\n"
        assert proxy.init({"name": "adder", "main": "handle", "code": code, "binary": False}).status == 200
        assert proxy.run({"a": 2, "b": 3}).json == {"sum": 5}

    def test_init_with_plain_code_default_main(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy()
        assert proxy.init({"code": "def main(p):\n    return [p]\n"}).status == 200
        assert proxy.run({"k": "v"}).json == [{"k": "v"}]

    def test_init_with_zip_and_module_function(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy()
        code = _zip(
            {
                "tools/__init__.py": "",
                "tools/scale.py": "FACTOR = 3\n",
                "entry.py": (
                    "from tools.scale import FACTOR\n\ndef go(p):\n    return {'v': p['v'] * FACTOR}\n"
                ),
            }
        )
        assert proxy.init({"code": code, "binary": True, "main": "entry:go"}).status == 200
        assert proxy.run({"v": 7}).json == {"v": 21}

    @pytest.mark.parametrize("entry", ["__main__.py", "main.py"])
    def test_init_with_zip_and_entry_file(self, start_proxy: StartProxy, entry: str) -> None:
        proxy = start_proxy()
        code = _zip({entry: "def main(p):\n    return {'entry': __name__}\n"})
        assert proxy.init({"code": code, "binary": True, "main": "main"}).status == 200
        assert proxy.run().json == {"entry": "action_main"}

    def test_bad_init_code(self, start_proxy: StartProxy) -> None:
        # A failed init leaves the proxy uninitialised, so one proxy takes every bad case in turn.
        proxy = start_proxy()
        cases: list[tuple[dict[str, Any], str]] = [
            ({"code": _zip({"other.py": "x = 1\n"}), "binary": True}, "neither __main__.py nor main.py"),
            ({"code": "not base64 ***", "binary": True}, "not valid base64"),
            ({"code": base64.b64encode(b"plain bytes").decode(), "binary": True}, "not a zip archive"),
            ({"code": "def main(p) return {}\n"}, "SyntaxError"),
            ({"code": "def main(p):\n    return {}\n", "main": "nothere"}, "has no function 'nothere'"),
            ({"code": "import sys\nsys.exit(4)\n"}, "SystemExit: 4"),
            ({"code": 42}, "'code' must be a string"),
        ]
        for value, fragment in cases:
            answer = proxy.init(value)
            assert answer.status == 502, value
            assert fragment in answer.json["error"], (value, answer.json)
        assert proxy.init({"code": "def main(p):\n    return {'ok': 1}\n"}).status == 200
        assert proxy.run().json == {"ok": 1}

    @pytest.mark.parametrize(
        ("handler", "fragment"),
        [
            ("nosuchmodule:main", "cannot import module 'nosuchmodule': ModuleNotFoundError"),
            ("probe:nothing", "module 'probe' has no function 'nothing'"),
            ("probe:not_callable", "probe.not_callable is not callable"),
            ("broken:main", "RuntimeError: import-time failure"),
        ],
    )
    def test_bad_baked_handler(self, start_proxy: StartProxy, handler: str, fragment: str) -> None:
        proxy = start_proxy(handler=handler)
        answer = proxy.init()
        assert answer.status == 502
        assert fragment in answer.json["error"]

    def test_init_error_traceback_on_stderr(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="broken:main")
        assert proxy.init().status == 502
        _, err = _markers(proxy, 1)
        assert "Traceback (most recent call last)" in err
        assert 'broken.py", line 3' in err

    def test_run_before_init(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy()
        answer = proxy.run({"x": 1})
        assert answer.status == 502
        assert answer.json == {"error": "The action has not been initialized."}

    def test_init_env_is_exported(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="probe:env")
        assert proxy.init({"env": {"FOO": "bar", "COUNT": 3}}).status == 200
        env = proxy.run({"names": ["FOO", "COUNT"]}).json["env"]
        assert env["FOO"] == "bar"
        assert env["COUNT"] == "3"

    def test_env_is_set_before_the_import(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy()
        code = "import os\nAT_IMPORT = os.environ.get('FOO')\ndef main(p):\n    return {'foo': AT_IMPORT}\n"
        assert proxy.init({"code": code, "env": {"FOO": "early"}}).status == 200
        assert proxy.run().json == {"foo": "early"}

    # --- run results ------------------------------------------------------------------------------

    def test_result_types(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="probe:returns")
        proxy.init()
        results: list[Any] = [{}, {"a": [1, 2]}, [], [1, "two", None]]
        for result in results:
            answer = proxy.run({"result": result})
            assert answer.status == 200, result
            assert answer.headers["Content-Type"].startswith("application/json")
            assert answer.json == result
        for result in ["text", 3, 1.5, True, None]:
            answer = proxy.run({"result": result})
            assert answer.status == 502, result
            assert answer.json == {"error": NOT_A_RESULT}

    def test_result_that_is_not_json(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="probe:not_json")
        proxy.init()
        for kind in ("set", "nan"):
            answer = proxy.run({"kind": kind})
            assert answer.status == 502, kind
            assert answer.json["error"].startswith("The action returned a result that is not JSON")

    def test_exception(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="probe:fail")
        proxy.init()
        answer = proxy.run({"message": "the detector is offline"})
        assert answer.status == 502
        assert answer.json == {"error": "ValueError: the detector is offline"}
        _, err = _markers(proxy, 2)
        assert "Traceback (most recent call last)" in err
        assert "ValueError: the detector is offline" in err

    def test_sys_exit_does_not_end_the_proxy(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="probe:exits")
        proxy.init()
        answer = proxy.run({"code": 3})
        assert answer.status == 502
        assert answer.json == {"error": "SystemExit: 3"}
        assert proxy.run({}).json == {"survived": True}

    def test_async_handler(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="probe:later")
        proxy.init()
        assert proxy.run({"n": 1}).json == {"awaited": {"n": 1}}

    def test_unicode_in_and_out(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy()
        proxy.init()
        value = {"text": "Grüße aus Hamburg 🌍 日本語 \u2028 ☃", "ключ": "значение"}
        answer = proxy.run(value)
        assert answer.status == 200
        assert answer.json == {"params": value}
        assert "🌍".encode() in answer.raw  # sent as UTF-8, not as \\u escapes

    def test_many_runs_on_one_connection(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy()
        proxy.init()
        for i in range(50):
            assert proxy.run({"i": i}).json == {"params": {"i": i}}

    # --- activation context -----------------------------------------------------------------------

    def test_context_is_exported_then_cleared(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="probe:env")
        proxy.init()
        context = _context()
        seen = proxy.run({}, context).json["env"]
        for key, value in context.items():
            assert seen[f"__OW_{key.upper()}"] == value
        after = proxy.run({}).json["env"]
        assert not any(key in after for key in ("__OW_API_KEY", "__OW_ACTIVATION_ID", "__OW_DEADLINE"))
        out, err = _markers(proxy, 3)
        assert API_KEY not in out
        assert API_KEY not in err

    # --- limits and time --------------------------------------------------------------------------

    def test_deadline_ends_a_hanging_run_and_the_proxy(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="probe:hang")
        proxy.init()
        started = time.monotonic()
        answer = proxy.run({}, _context(deadline=str(int((time.time() + 0.4) * 1000))))
        elapsed = time.monotonic() - started
        assert answer.status == 502
        assert answer.json["error"].startswith("The action exceeded its time limit")
        assert 0.3 < elapsed < 3
        # Design: a thread cannot be killed, so the proxy exits and the backend replaces the container.
        assert proxy.wait_exit(10) == EXIT_TIMED_OUT
        assert "exiting so the container is replaced" in proxy.err.text()

    def test_configured_timeout_without_deadline(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="probe:hang", env={"FAASPUB_TIMEOUT_MS": "300"})
        proxy.init()
        answer = proxy.run({})
        assert answer.status == 502
        assert answer.json == {"error": "The action exceeded its time limit of 300 ms."}
        assert proxy.wait_exit(10) == EXIT_TIMED_OUT

    def test_past_deadline_does_not_start_the_run(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="probe:exits")
        proxy.init()
        answer = proxy.run({"code": 1}, _context(deadline=str(int((time.time() - 5) * 1000))))
        assert answer.status == 502
        assert "before it could start" in answer.json["error"]
        assert proxy.run({}).json == {"survived": True}

    def test_bad_deadline(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy()
        proxy.init()
        answer = proxy.run({}, {"deadline": "tomorrow"})
        assert answer.status == 400
        assert "deadline" in answer.json["error"]

    @pytest.mark.parametrize(("concurrency", "overlap"), [("1", False), ("2", True)])
    def test_runs_serialised_with_concurrency_one(
        self, start_proxy: StartProxy, concurrency: str, overlap: bool
    ) -> None:
        proxy = start_proxy(handler="probe:sleep", env={"FAASPUB_CONCURRENCY": concurrency})
        proxy.init()
        results: list[dict[str, float]] = []

        def call() -> None:
            results.append(proxy.run({"seconds": 0.3}, fresh=True).json)

        threads = [threading.Thread(target=call) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        first, second = sorted(results, key=lambda r: r["start"])
        assert (second["start"] < first["end"]) is overlap

    def test_body_over_limit(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy()
        proxy.init()
        answer = proxy.run({"blob": "x" * (1024 * 1024 + 20_000)}, fresh=True)
        assert answer.status == 413
        assert "exceeds the limit" in answer.json["error"]
        near_limit = {"blob": "é" * 500_000}  # 1,000,000 bytes of UTF-8
        assert proxy.run(near_limit, fresh=True).json == {"params": near_limit}

    def test_body_needs_content_length(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy()
        body = b'c\r\n{"value":{}}\r\n0\r\n\r\n'
        chunked = proxy.request("POST", "/init", body, {"Transfer-Encoding": "chunked"}, fresh=True)
        assert chunked.status == 411
        assert "error" in chunked.json
        assert proxy.init().status == 200

    def test_chatty_handler_does_not_block(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="probe:shout")
        proxy.init()
        answer = proxy.run({"megabytes": 5}, timeout=60)
        assert answer.status == 200
        assert answer.json == {"lines": 5 * 1024}
        out, err = _markers(proxy, 2)
        assert out.count("y" * 1023 + "\n") == 5 * 1024
        assert out.rstrip("\n").endswith(MARKER)
        assert err.index("shout done") < err.rindex(MARKER)

    # --- protocol errors and logs -----------------------------------------------------------------

    def test_unknown_routes(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy()
        for method, path, status in (
            ("POST", "/nope", 404),
            ("GET", "/", 404),
            ("GET", "/run", 405),
            ("PUT", "/init", 405),
            ("OPTIONS", "/run", 501),
        ):
            answer = proxy.request(method, path, b"{}" if method != "GET" else None)
            assert answer.status == status, (method, path)
            assert "error" in answer.json
        assert proxy.init().status == 200

    def test_malformed_run_request(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy()
        proxy.init()
        for body in (b"{not json", b"[1, 2]", b'{"value": 3}', "ü".encode("latin-1"), b""):
            answer = proxy.request("POST", "/run", body)
            assert answer.status == 400, body
            assert "error" in answer.json
        assert proxy.run({"after": "all that"}).json == {"params": {"after": "all that"}}

    def test_markers_after_every_init_and_run(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="probe:talk")
        proxy.init()
        proxy.run({"out": "first out", "err": "first err"})
        proxy.run({"out": "second out", "err": "second err"})
        out, err = _markers(proxy, 3)
        assert _count(out) == 3 and _count(err) == 3
        blocks_out = out.split(MARKER + "\n")
        blocks_err = err.split(MARKER + "\n")
        assert "first out" in blocks_out[1] and "second out" in blocks_out[2]
        assert "first err" in blocks_err[1] and "second err" in blocks_err[2]

    def test_error_replies_are_json(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy(handler="probe:fail")
        proxy.init()
        answer = proxy.run()
        assert json.loads(answer.raw) == {"error": "ValueError: boom"}
