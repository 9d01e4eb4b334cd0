"""A real S3 server for the tests: a throwaway single-node Ceph cluster with its RADOS Gateway.

Follows ``shared/reference/ceph-rgw.md``: one monitor, one memstore OSD and one radosgw, all bound
to 127.0.0.1 on ports of their own, with every file (configuration, keyrings, monitor store, logs,
admin sockets) in one temporary folder. Keys for the monitor, the admin, the OSD and the gateway
are made up front and handed to the monitor at ``--mkfs``, which saves the ``ceph auth`` round trips
(each ``ceph`` command costs about 0.2 s). The daemons run in the foreground as our own children
and are stopped by their handles. Start-up to a ready S3 user takes about 2 s.

Loaded as a pytest plugin: the ``ceph_rgw`` fixture is one cluster per test session (that is, per
xdist worker); each test takes its own buckets from :meth:`CephRgw.bucket`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from tests.infra.containers import require_tool

TOOLS = ("ceph-authtool", "monmaptool", "ceph-mon", "ceph-osd", "ceph", "radosgw", "radosgw-admin")
RADOS_CLASSES = "/usr/lib/x86_64-linux-gnu/rados-classes"
ACCESS_KEY = "FAASPUBTESTACCESSKEY"
# A test-only secret of a throwaway cluster on loopback; fixed so a failing run can be reproduced.
SECRET_KEY = "faaspub-test-secret-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(root: Path, fsid: str, mon_port: int, rgw_port: int) -> str:
    return f"""[global]
fsid = {fsid}
mon_host = v2:127.0.0.1:{mon_port}
public_addr = 127.0.0.1
ms_bind_ipv6 = false
ms_bind_msgr1 = false
ms_bind_msgr2 = true
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = {root}/$name.keyring
run_dir = {root}/run
pid_file = {root}/run/$name.pid
admin_socket = {root}/run/$name.asok
log_file = {root}/log/$name.log
crash_dir = {root}/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_data_avail_warn = 1

[mon]
mon_data = {root}/mon/$cluster-$id
paxos_propose_interval = 0.01
paxos_min_wait = 0.001

[osd]
osd_data = {root}/osd/$cluster-$id
osd_objectstore = memstore
memstore_device_bytes = 1073741824
osd_class_dir = {RADOS_CLASSES}

[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw_data = {root}/rgw
# Lets a test create a topic whose push endpoint carries user:password (Basic auth), as behind a
# TLS-terminating proxy: RGW refuses secrets in topics created over plain HTTP otherwise.
rgw_trust_forwarded_https = true
"""


@dataclass
class CephRgw:
    """A running cluster: ``endpoint`` is the S3 (and SNS-style topics) API on 127.0.0.1."""

    root: Path
    endpoint: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)
    access_key: str = ACCESS_KEY
    secret_key: str = field(default=SECRET_KEY, repr=False)

    def client(self, service: str = "s3") -> Any:
        """A boto3 client (``s3`` or ``sns``) for this gateway, path-style addressing."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="default",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def credentials_file(self, path: Path) -> Path:
        """An AWS-style shared credentials file for this user (what the operator configures)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"[default]\naws_access_key_id = {self.access_key}\naws_secret_access_key = {self.secret_key}\n"
        )
        return path

    def bucket(self, prefix: str = "b") -> str:
        """A new, empty bucket with a unique name (tests share the session's cluster)."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def notify(
        self,
        bucket: str,
        push_endpoint: str,
        events: tuple[str, ...] = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*"),
        prefix: str | None = None,
        basic_auth: bool = False,
    ) -> str:
        """A topic pushing to ``push_endpoint`` and a notification of ``bucket`` on it; the topic ARN.

        ``basic_auth``: the endpoint carries ``user:password@``, which RGW accepts only for a topic
        created over HTTPS, so the request says it came through a TLS-terminating proxy.
        """
        sns = self.client("sns")
        if basic_auth:
            sns.meta.events.register(
                "before-sign.sns.CreateTopic",
                lambda request, **_: request.headers.__setitem__("X-Forwarded-Proto", "https"),
            )
        topic = f"t-{bucket}"
        arn: str = sns.create_topic(Name=topic, Attributes={"push-endpoint": push_endpoint})["TopicArn"]
        config: dict[str, Any] = {"Id": topic, "TopicArn": arn, "Events": list(events)}
        if prefix is not None:
            config["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}
        self.client().put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"TopicConfigurations": [config]}
        )
        return arn

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.kill()  # memstore: nothing to flush, SIGKILL is safe and immediate
        for process in self.processes:
            process.wait(timeout=10)

    def log(self, name: str = "client.rgw.a") -> str:
        path = self.root / "log" / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


class _Cluster:
    """The steps of bring-up, in order; each waits with a deadline and says what did not come up."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "ceph.conf"
        self.fsid = str(uuid.uuid4())
        self.mon_port, self.rgw_port = free_port(), free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    def run(self, *args: str, timeout: float = 30) -> str:
        proc = subprocess.run(
            [*args, "-c", str(self.conf)] if args[0] not in ("ceph-authtool", "monmaptool") else args,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            output = (proc.stderr + proc.stdout)[-1500:]
            raise RuntimeError(f"{' '.join(args[:3])} failed ({proc.returncode}): {output}")
        return proc.stdout

    def daemon(self, *args: str) -> None:
        out = open(self.root / "log" / f"{args[0]}.out", "ab")  # noqa: SIM115 (kept open for the child)
        with out:
            self.processes.append(
                subprocess.Popen([*args, "-f", "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT)
            )

    def keys(self) -> None:
        """A keyring per entity, each imported into the monitor's, which ``--mkfs`` loads."""
        entities = {
            "mon.": ["mon", "allow *"],
            "client.admin": ["mon", "allow *", "osd", "allow *", "mgr", "allow *"],
            "osd.0": ["mon", "allow profile osd", "osd", "allow *"],
            "client.rgw.a": ["mon", "allow rw", "osd", "allow rwx"],
        }
        mon = self.root / "mon.keyring"
        for name, caps in entities.items():
            path = self.root / f"{name.rstrip('.')}.keyring"
            cap_args = [a for i in range(0, len(caps), 2) for a in ("--cap", caps[i], caps[i + 1])]
            self.run("ceph-authtool", "--create-keyring", str(path), "--gen-key", "-n", name, *cap_args)
            if path != mon:
                self.run("ceph-authtool", str(mon), "--import-keyring", str(path))

    def monitor(self) -> None:
        monmap = self.root / "monmap"
        address = f"[v2:127.0.0.1:{self.mon_port}]"
        self.run("monmaptool", "--create", "--fsid", self.fsid, "--addv", "a", address, str(monmap))
        keyring = str(self.root / "mon.keyring")
        self.run("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap), "--keyring", keyring)
        self.daemon("ceph-mon", "-i", "a")

    def osd(self) -> None:
        osd_uuid = str(uuid.uuid4())
        (self.root / "osd" / "ceph-0").mkdir(parents=True)
        # --no-mon-config: without it mkfs asks the monitor for configuration and fails.
        self.run("ceph-osd", "-i", "0", "--mkfs", "--no-mon-config", "--osd-uuid", osd_uuid)
        self.run("ceph", "osd", "new", osd_uuid, "0", timeout=60)
        self.daemon("ceph-osd", "-i", "0")

    def gateway(self) -> CephRgw:
        self.daemon("radosgw", "-n", "client.rgw.a")
        endpoint = f"http://127.0.0.1:{self.rgw_port}"
        self.wait(lambda: _answers(endpoint), 60, "radosgw to answer HTTP")
        self.run(
            "radosgw-admin", "user", "create", "--uid", "faaspub-test", "--display-name", "faaspub test",
            "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY,
        )  # fmt: skip
        return CephRgw(self.root, endpoint, self.processes)

    def wait(self, ready: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what} (exited: {dead or 'none'})")
            time.sleep(0.02)


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
        return True
    except requests.ConnectionError:
        return False


def start_ceph_rgw(root: Path) -> CephRgw:
    """Bring up monitor, OSD and gateway under ``root``; stops what started if a step fails."""
    for tool in TOOLS:
        require_tool(tool)
    for sub in ("run", "log", "crash", "rgw", "mon"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cluster = _Cluster(root)
    (cluster.conf).write_text(_config(root, cluster.fsid, cluster.mon_port, cluster.rgw_port))
    try:
        cluster.keys()
        cluster.monitor()
        cluster.osd()
        return cluster.gateway()
    except BaseException:
        CephRgw(root, "", cluster.processes).stop()
        raise


@pytest.fixture(scope="session")
def ceph_rgw() -> Iterator[CephRgw]:
    """One Ceph RGW for the test session (per xdist worker), in its own temporary folder."""
    root = Path(tempfile.mkdtemp(prefix="faaspub-ceph-"))
    try:
        server = start_ceph_rgw(root)
    except RuntimeError as exc:
        logs = "\n".join(p.read_text(errors="replace")[-1500:] for p in (root / "log").glob("*"))
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"{exc}\n{logs}") from None
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":  # python -m tests.infra.ceph: bring one up, time it, stop it
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="faaspub-ceph-"))
    rgw = start_ceph_rgw(folder)
    print(f"{rgw.endpoint} ready in {time.monotonic() - started:.2f}s ({folder})")
    rgw.stop()
    shutil.rmtree(folder, ignore_errors=True)
