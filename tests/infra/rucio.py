"""``rucio_server``: the real Rucio server (PyPI ``rucio``), run for the test session.

It runs from its own virtualenv ``.venv-rucio`` (``scripts/setup-rucio-server.sh``, part of ``make
setup``) under gunicorn, serving the Flask app ``rucio.web.rest.flaskapi.v1.main:application`` on a
random loopback port, with a throwaway SQLite database. Bootstrap as Rucio's ``tools/bootstrap.py``
does it (schema, base VO, root account with a userpass identity), then through Rucio's own REST API:
two RSEs with WebDAV protocols on the facility's dCache paths (``FACILITY_BUFFER``, non-deterministic,
``type=dcache``, over ``/pnfs/facility/raw``; ``FACILITY_TAPE``, ``tier=tape``, over
``/pnfs/facility/archive``) and account limits for root on both. Stopped (by its process handle)
when the session ends. Without ``.venv-rucio`` the tests skip, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.stack import free_port

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("FAASPUB_RUCIO_VENV", REPO / ".venv-rucio"))
APP = "rucio.web.rest.flaskapi.v1.main:application"
RSES = {
    "FACILITY_BUFFER": ("/pnfs/facility/raw", {"type": "dcache"}, False),
    "FACILITY_TAPE": ("/pnfs/facility/archive", {"type": "dcache", "tier": "tape"}, True),
}
DCACHE_HOST, DCACHE_PORT = "dcache.example.org", 2880

SERVER_CONFIG = """\
[common]
logdir = {root}/log
loglevel = WARNING
[database]
default = sqlite:///{root}/rucio.db
[alembic]
cfg = {root}/alembic.ini
[bootstrap]
userpass_identity = root
userpass_pwd = {password}
userpass_email = root@example.org
[policy]
permission = generic
schema = generic
lfn2pfn_algorithm_default = hash
support = root@example.org
support_rucio = root@example.org
"""
ALEMBIC_CONFIG = """\
[alembic]
script_location = {migrations}
sqlalchemy.url = sqlite:///{root}/rucio.db
[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
level = WARN
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic
[formatter_generic]
format = %(levelname)s [%(name)s] %(message)s
"""
CLIENT_CONFIG = """\
[client]
rucio_host = {url}
auth_host = {url}
auth_type = userpass
account = root
request_retries = 3
"""
BOOTSTRAP = (
    "from rucio.db.sqla.util import build_database, create_base_vo, create_root_account;"
    "build_database(); create_base_vo(); create_root_account()"
)


@dataclass(frozen=True)
class RucioServer:
    """A running Rucio server and the root identity (for the function's settings and for checks)."""

    url: str
    account: str
    username: str
    password: str = ""

    def client(self) -> Any:
        """A rucio-clients ``Client`` for root (the checks go through Rucio's own API)."""
        from rucio.client import Client

        return Client(
            rucio_host=self.url,
            auth_host=self.url,
            account=self.account,
            auth_type="userpass",
            creds={"username": self.username, "password": self.password},
        )


def _server_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.is_file():
        reason = (
            f"the Rucio server virtualenv {VENV} is missing: run scripts/setup-rucio-server.sh (make setup)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return python


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"the Rucio server exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if requests.get(f"{url}/ping", timeout=5).ok:
                return
        except requests.RequestException:  # not listening yet, or still loading the app
            pass
        time.sleep(0.1)
    raise AssertionError(f"the Rucio server did not answer /ping in 60 s:\n{log.read_text()[-3000:]}")


def _configure(server: RucioServer) -> None:
    """RSEs, protocols and account limits, through Rucio's REST API."""
    client = server.client()
    for rse, (prefix, attributes, deterministic) in RSES.items():
        client.add_rse(rse, deterministic=deterministic)
        for key, value in attributes.items():
            client.add_rse_attribute(rse, key, value)
        client.add_protocol(
            rse,
            {
                "scheme": "davs",
                "hostname": DCACHE_HOST,
                "port": DCACHE_PORT,
                "prefix": prefix,
                "impl": "rucio.rse.protocols.webdav.Default",
                "domains": {
                    "lan": {"read": 1, "write": 1, "delete": 1},
                    "wan": {
                        "read": 1,
                        "write": 1,
                        "delete": 1,
                        "third_party_copy_read": 1,
                        "third_party_copy_write": 1,
                    },
                },
            },
        )
        client.set_local_account_limit(server.account, rse, 10**15)


@pytest.fixture(scope="session")
def rucio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RucioServer]:
    python = _server_python()
    root = tmp_path_factory.mktemp("rucio")
    (root / "log").mkdir()
    password = secrets.token_urlsafe(16)
    migrations = subprocess.run(
        [str(python), "-c", "import rucio.db.sqla.migrate_repo as m, os; print(os.path.dirname(m.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (root / "rucio.cfg").write_text(SERVER_CONFIG.format(root=root, password=password))
    (root / "alembic.ini").write_text(ALEMBIC_CONFIG.format(root=root, migrations=migrations))
    env = {**os.environ, "RUCIO_CONFIG": str(root / "rucio.cfg")}
    subprocess.run([str(python), "-c", BOOTSTRAP], env=env, capture_output=True, check=True, timeout=120)
    url = f"http://127.0.0.1:{free_port()}"
    log = root / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(python), "-m", "gunicorn", "--bind", url.removeprefix("http://"), "--workers", "1", APP],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(proc, url, log)
        (root / "client.cfg").write_text(CLIENT_CONFIG.format(url=url))
        # rucio-clients reads its configuration file once per process; the tests and the standard
        # functions they call in-process all talk to this server as root.
        os.environ["RUCIO_CONFIG"] = str(root / "client.cfg")
        server = RucioServer(url=url, account="root", username="root", password=password)
        _configure(server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
