"""``faaspub release-info``: release.json, the dotenv hand-off, the runtime check and the notification."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli.release import release_info
from tests.ci.pipeline import REPO_ROOT

DIGEST = "sha256:" + "ab" * 32
JUNIT_OK = (
    '<testsuites><testsuite name="pytest" tests="3" failures="0" errors="0" skipped="1">'
    '<testcase classname="t" name="a"/><testcase classname="t" name="b"/>'
    '<testcase classname="t" name="c"><skipped/></testcase></testsuite></testsuites>'
)
JUNIT_FAILED = (
    '<testsuite name="pytest" tests="2" failures="1" errors="0" skipped="0">'
    '<testcase classname="t" name="a"/><testcase classname="t" name="b"><failure message="x"/></testcase>'
    "</testsuite>"
)
CI_ENV = {
    "CI_COMMIT_TAG": "v1.2.0",
    "CI_COMMIT_SHA": "c0ffee" * 6 + "abcd",
    "CI_PROJECT_URL": "https://gitlab.example.org/group/hello",
    "CI_PROJECT_ID": "42",
    "CI_JOB_TOKEN": "secret-job-token",
    "FAASPUB_NAMESPACE": "group",
}


@pytest.fixture
def fn(tmp_path: Path) -> Path:
    folder = tmp_path / "hello"
    shutil.copytree(REPO_ROOT / "examples" / "hello", folder)
    (folder / "build.json").write_text(
        json.dumps(
            {"image": f"127.0.0.1:5000/group/hello/group/hello:1.2.0-abababababab@{DIGEST}", "digest": DIGEST}
        )
    )
    return folder


def invoke(folder: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(release_info, [str(folder), *args], env={**CI_ENV, **(env or {})})
    if result.exception and not isinstance(result.exception, SystemExit):
        from publisher.errors import FaaspubError

        assert isinstance(result.exception, FaaspubError), result.exception
        return 1, str(result.exception)
    return result.exit_code, result.output


def test_release_json_has_function_version_commit_image_digest_and_tests(fn: Path) -> None:
    (fn / "junit.xml").write_text(JUNIT_OK)
    code, out = invoke(
        fn, "--build", str(fn / "build.json"), "--junit", str(fn / "junit.xml"), "-o", str(fn / "r.json")
    )
    assert code == 0, out
    record = json.loads((fn / "r.json").read_text())
    assert record["function"] == "hello"
    assert record["version"] == "1.2.0"
    assert record["commit"] == CI_ENV["CI_COMMIT_SHA"]
    assert record["namespace"] == "group"
    assert record["digest"] == DIGEST
    assert record["image"] == f"127.0.0.1:5000/group/hello/group/hello:1.2.0-abababababab@{DIGEST}"
    assert record["tests"] == {"passed": 2, "failed": 0, "errors": 0, "skipped": 1}
    assert "secret-job-token" not in (fn / "r.json").read_text()


def test_dotenv_hands_the_pinned_image_to_later_jobs(fn: Path) -> None:
    code, out = invoke(fn, "--build", str(fn / "build.json"), "--dotenv", str(fn / "build.env"))
    assert code == 0, out
    lines = (fn / "build.env").read_text().splitlines()
    assert f"FAASPUB_IMAGE=127.0.0.1:5000/group/hello/group/hello:1.2.0-abababababab@{DIGEST}" in lines
    assert f"FAASPUB_DIGEST={DIGEST}" in lines
    assert "FAASPUB_FUNCTION=hello" in lines


def test_failed_tests_are_never_released(fn: Path) -> None:
    (fn / "junit.xml").write_text(JUNIT_FAILED)
    code, out = invoke(
        fn, "--build", str(fn / "build.json"), "--junit", str(fn / "junit.xml"), "-o", str(fn / "r.json")
    )
    assert code != 0
    assert "1 failed" in out
    assert not (fn / "r.json").exists()


def test_runtime_mismatch_names_both_runtimes(fn: Path) -> None:
    assert invoke(fn, "--expect-runtime", "python:3.11")[0] == 0
    assert invoke(fn, "--expect-runtime", "auto")[0] == 0
    code, out = invoke(fn, "--expect-runtime", "python:3.12")
    assert code != 0
    assert "python:3.11" in out and "python:3.12" in out


def test_bad_build_json_is_a_clear_error(fn: Path) -> None:
    (fn / "build.json").write_text('{"image": "x"}')
    code, out = invoke(fn, "--build", str(fn / "build.json"), "--dotenv", str(fn / "e"))
    assert code != 0
    assert "build.json" in out and "digest" in out


class _Recorder(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], bytes]] = []
    status = 201

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((self.path, dict(self.headers), body))
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def service() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Recorder", (_Recorder,), {"received": [], "status": 201})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def test_notify_posts_release_json_with_the_job_token_in_a_header(
    fn: Path, service: tuple[str, type[_Recorder]]
) -> None:
    url, handler = service
    (fn / "junit.xml").write_text(JUNIT_OK)
    code, out = invoke(
        fn,
        "--build",
        str(fn / "build.json"),
        "--junit",
        str(fn / "junit.xml"),
        "-o",
        str(fn / "r.json"),
        "--notify",
        url,
    )
    assert code == 0, out
    [(path, headers, body)] = handler.received
    assert path == "/api/v1/releases"
    assert headers["JOB-TOKEN"] == "secret-job-token"
    assert json.loads(body) == json.loads((fn / "r.json").read_text())


def test_a_refusing_service_fails_the_job_without_leaking_the_token(
    fn: Path, service: tuple[str, type[_Recorder]]
) -> None:
    url, handler = service
    handler.status = 401
    code, out = invoke(fn, "--build", str(fn / "build.json"), "--notify", url)
    assert code != 0
    assert "401" in out and url in out
    assert "secret-job-token" not in out
