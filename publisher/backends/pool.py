"""Warm instances of one function version: reuse, per-instance concurrency, growth, idle reaping.

A :class:`Worker` is a started and initialised runtime (``/init`` done) plus keep-alive HTTP
connections to it. :class:`VersionPool` hands out a worker with a free slot (``concurrency`` runs
per worker, the OpenWhisk meaning of the limit), starts another one while fewer than
``max_instances`` exist, and otherwise makes callers wait. Workers that timed out or crashed are
discarded, never reused; idle ones are stopped after the idle timeout.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Callable

from publisher.backends.catalogue import Deployed
from publisher.backends.executor import Endpoint, Instance, StartError

log = logging.getLogger(__name__)


class Channel:
    """Keep-alive HTTP/1.1 connections to one runtime proxy (one per concurrent call), with its token."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._headers = {"Content-Type": "application/json", **endpoint.headers}
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def post(self, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        """``(status, body)``; socket timeouts and connection failures propagate to the caller."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.endpoint.connection(timeout)
        elif conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            # One send for headers and body (http.client joins them), so Nagle never delays a run.
            conn.request("POST", path, body, self._headers)
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            conn.close()
            raise
        if resp.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        return resp.status, data

    def close(self) -> None:
        with self._lock:
            conns, self._idle = self._idle, []
        for conn in conns:
            conn.close()


class Worker:
    """A started, initialised instance and what the pool tracks about it."""

    def __init__(
        self, instance: Instance, init_logs: list[str], secrets: dict[str, str] | None = None
    ) -> None:
        self.instance = instance
        # Secret values this instance got, to mask them in its activation logs; never printed.
        self.secrets = secrets or {}
        self.channel = Channel(instance.endpoint)
        self.logs = instance.logs
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.runs = 0
        self.init_logs = init_logs

    def take_init_logs(self) -> list[str]:
        """The ``/init`` output, given to the first activation of this worker (as OpenWhisk does)."""
        logs, self.init_logs = self.init_logs, []
        return logs

    def stop(self) -> None:
        self.channel.close()
        try:
            self.instance.stop()
        except Exception as exc:  # stopping must never hide the activation's own outcome
            log.warning("stopping a runtime instance failed: %s", exc)


class VersionPool:
    """Workers of one version; thread-safe."""

    def __init__(self, deployed: Deployed, spawn: Callable[[], Worker], max_instances: int) -> None:
        self.deployed = deployed
        self.spawn = spawn
        self.max_instances = max_instances
        self.capacity = max(1, deployed.concurrency)
        self.workers: list[Worker] = []
        self._starting = 0
        self._closed = False
        self._cond = threading.Condition()

    def acquire(self, wait_s: float) -> tuple[Worker, bool]:
        """A worker with a free slot and whether it was started for this call (a cold start)."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while True:
                if self._closed:
                    raise StartError(f"{self.deployed.function}@{self.deployed.version} was undeployed")
                free = [w for w in self.workers if w.in_flight < self.capacity]
                if free:
                    # Most recently used first: keeps the others idle so the reaper can stop them.
                    worker = max(free, key=lambda w: w.last_used)
                    worker.in_flight += 1
                    return worker, False
                if len(self.workers) + self._starting < self.max_instances:
                    self._starting += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StartError(
                        f"{self.deployed.function}@{self.deployed.version}: all {self.max_instances} "
                        f"instances stayed busy for {wait_s:.0f}s"
                    )
                self._cond.wait(left)
        try:
            worker = self.spawn()
        except BaseException:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._starting -= 1
            if self._closed:
                worker.stop()
                raise StartError(f"{self.deployed.function}@{self.deployed.version} was undeployed")
            worker.in_flight = 1
            self.workers.append(worker)
        return worker, True

    def release(self, worker: Worker, discard: bool = False) -> None:
        with self._cond:
            worker.in_flight -= 1
            worker.runs += 1
            worker.last_used = time.monotonic()
            gone = discard or not worker.instance.alive()
            if gone and worker in self.workers:
                self.workers.remove(worker)
            self._cond.notify()
        if gone:
            worker.stop()

    def reap(self, idle_s: float) -> int:
        """Stop workers idle for ``idle_s``; the number stopped."""
        now = time.monotonic()
        with self._cond:
            idle = [w for w in self.workers if w.in_flight == 0 and now - w.last_used >= idle_s]
            for worker in idle:
                self.workers.remove(worker)
        for worker in idle:
            worker.stop()
        return len(idle)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            workers, self.workers = self.workers, []
            self._cond.notify_all()
        for worker in workers:
            worker.stop()

    @property
    def size(self) -> int:
        with self._cond:
            return len(self.workers)
