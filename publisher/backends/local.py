"""The embedded local backend: runs each deployed version from its image and records every activation.

State is the catalogue (functions, versions, alias, triggers) and the activation table, so several
processes (``faaspub serve`` workers, the trigger deliverer, a CLI ``invoke``) share it. Each
process keeps its own warm pools of runtime instances, started through a container engine
(:mod:`~publisher.backends.docker_engine`) or, without one, as processes
(:mod:`~publisher.backends.process_engine`). Instances speak OpenWhisk's ``/init`` and ``/run``
to ``faaspub_runtime.proxy``; logs are split per activation on the end-of-activation markers.
"""

from __future__ import annotations

import atexit
import http.client
import json
import logging
import secrets as tokens
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from publisher.accounting.usage import bytes_of
from publisher.backends import naming
from publisher.backends.catalogue import Catalogue, Deployed, FunctionInfo, now
from publisher.backends.executor import (
    Endpoint,
    Executor,
    InitFailed,
    InstanceSpec,
    StartError,
    free_port,
    make_executor,
)
from publisher.backends.pool import VersionPool, Worker
from publisher.backends.secrets import redact, resolve_secrets
from publisher.core.types import Activation, ActivationStatus, Release
from publisher.errors import FaaspubError
from publisher.manifest.model import StorageTrigger

if TYPE_CHECKING:
    from publisher.core.context import Context

log = logging.getLogger(__name__)

MAX_PAYLOAD = 1024 * 1024
# How long a finished run waits for its end-of-activation markers to come through the engine.
LOG_WAIT_S = 2.0
# Beyond the action's own limit (the proxy enforces it), before the backend gives up on a run.
GRACE_S = 2.0
QUEUE_WAIT_MIN_S = 60.0
START_ATTEMPTS = 3
MAX_INSTANCES = 4

STATE_MARK = "$FAASPUB_STATE"  # stands for the service's state folder in activation records
CRASHED = "The action did not produce a valid response and exited unexpectedly."
NOT_A_RESULT = "The action did not return a dictionary or array."


def timed_out_message(timeout_ms: int) -> str:
    return f"The action exceeded its time limits of {timeout_ms} milliseconds."


class LocalBackend:
    """:class:`publisher.core.parts.Backend` embedded in the faaspub process; thread-safe."""

    name = "local"

    def __init__(self, context: Context, executor: Executor | None = None) -> None:
        self.settings = context.settings
        self.catalogue = Catalogue(context.sessions)
        self._executor = executor
        self._pools: dict[tuple[str, str, str, str], VersionPool] = {}
        self._lock = threading.Lock()
        self._async = ThreadPoolExecutor(max_workers=8, thread_name_prefix="invoke")
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        self.max_instances = MAX_INSTANCES
        atexit.register(self.close)

    @property
    def executor(self) -> Executor:
        with self._lock:
            if self._executor is None:
                self._executor = make_executor(self.settings)
            return self._executor

    # -- deploy, alias, removal -----------------------------------------------------------------

    def deploy(self, release: Release, alias: bool = True) -> None:
        naming.check_version(release.version)
        project = naming.project_of(release.source)
        self.catalogue.record(release, project)
        if alias:
            self.catalogue.set_alias(release.namespace, release.name, release.version)

    def rollback(self, namespace: str, function: str, version: str) -> None:
        self.catalogue.set_alias(namespace, function, version)

    def undeploy(self, namespace: str, function: str, version: str | None = None) -> None:
        self.catalogue.remove(namespace, function, version)
        self._close_pools(namespace, function, version)

    def prune(self, namespace: str, project: str, keep: Iterable[str]) -> list[str]:
        keep_set = set(keep)
        removed = [f for f in self.catalogue.project_functions(namespace, project) if f not in keep_set]
        for function in removed:
            self.undeploy(namespace, function)
        return removed

    def functions(self, namespace: str | None = None) -> list[FunctionInfo]:
        return self.catalogue.functions(namespace)

    # -- triggers -------------------------------------------------------------------------------

    def bind(self, release: Release, triggers: list[StorageTrigger]) -> None:
        self.catalogue.set_triggers(release.namespace, release.name, triggers)

    def unbind(self, namespace: str, function: str) -> None:
        self.catalogue.clear_triggers(namespace, function)

    def fire(self, namespace: str, function: str, event: Mapping[str, Any]) -> str | None:
        """Deliver a storage event: invoke the alias without waiting; the activation id."""
        # The CloudEvent id is the trigger deliverer's idempotency key: recorded as the cause, it lets
        # a deliverer restarted after a crash see that this run already started.
        cause = str(event.get("id") or "storage")
        return self.invoke(namespace, function, event, blocking=False, cause=cause).id

    # -- invoke and activations -----------------------------------------------------------------

    def invoke(
        self,
        namespace: str,
        function: str,
        payload: Mapping[str, Any],
        version: str | None = None,
        blocking: bool = True,
        cause: str | None = None,
    ) -> Activation:
        deployed = self.catalogue.resolve(namespace, function, version)
        body = _run_body(deployed, payload)
        activation_id = uuid.uuid4().hex
        if blocking:
            activation = self._run(deployed, body, activation_id, cause)
            self.catalogue.store_activation(namespace, activation, new=True)
            return activation
        pending = Activation(
            id=activation_id,
            function=function,
            version=deployed.version,
            digest=deployed.digest,
            start=now(),
            duration_ms=0.0,
            status="pending",
            cause=cause,
            memory_mb=deployed.memory_mb,
            bytes_read=bytes_of(payload),
        )
        self.catalogue.store_activation(namespace, pending, new=True)
        self._async.submit(self._run_and_store, deployed, body, activation_id, cause)
        return pending

    def _run_and_store(
        self, deployed: Deployed, body: dict[str, Any], activation_id: str, cause: str | None
    ) -> None:
        try:
            activation = self._run(deployed, body, activation_id, cause)
        except Exception as exc:  # a background run must leave a record, whatever happened
            log.exception("activation %s failed in the backend", activation_id)
            result, _ = self._without_host_paths("system_error", {"error": str(exc)}, [])
            activation = Activation(
                id=activation_id,
                function=deployed.function,
                version=deployed.version,
                digest=deployed.digest,
                start=now(),
                duration_ms=0.0,
                status="system_error",
                result=result,
                cause=cause,
                memory_mb=deployed.memory_mb,
                bytes_read=bytes_of(body["value"]),
            )
        self.catalogue.store_activation(deployed.namespace, activation)

    def _run(
        self, deployed: Deployed, body: dict[str, Any], activation_id: str, cause: str | None
    ) -> Activation:
        start = now()
        t0 = time.perf_counter()

        def finish(status: ActivationStatus, result: Any, logs: list[str]) -> Activation:
            result, logs = self._without_host_paths(status, result, logs)
            return Activation(
                id=activation_id,
                function=deployed.function,
                version=deployed.version,
                digest=deployed.digest,
                start=start,
                duration_ms=(time.perf_counter() - t0) * 1000,
                status=status,
                result=result,
                logs=logs,
                cause=cause,
                memory_mb=deployed.memory_mb,
                bytes_read=bytes_of(body["value"]),
            )

        pool = self._pool(deployed)
        try:
            worker, _cold = pool.acquire(max(QUEUE_WAIT_MIN_S, deployed.timeout_ms / 1000))
        except StartError as exc:
            status: ActivationStatus = "developer_error" if isinstance(exc, InitFailed) else "system_error"
            return finish(status, {"error": exc.message}, [])
        init_logs = worker.take_init_logs()
        body["activation_id"] = activation_id
        body["transaction_id"] = activation_id
        body["deadline"] = int(time.time() * 1000) + deployed.timeout_ms
        discard = False
        try:
            code, data = worker.channel.post(
                "/run", json.dumps(body).encode(), timeout=deployed.timeout_ms / 1000 + GRACE_S
            )
        except TimeoutError:
            discard = True
            status, result = "timeout", {"error": timed_out_message(deployed.timeout_ms)}
        except (OSError, http.client.HTTPException):
            discard = True
            status, result = "developer_error", {"error": CRASHED}
        else:
            status, result = _outcome(code, data, deployed.timeout_ms)
            discard = status == "timeout"  # the proxy exits after a timed-out run
        logs = init_logs + worker.logs.take(0.3 if discard else LOG_WAIT_S)
        pool.release(worker, discard=discard)
        if worker.secrets:
            logs = [redact(line, worker.secrets) for line in logs]
        return finish(status, result, logs)

    def _without_host_paths(
        self, status: ActivationStatus, result: Any, logs: list[str]
    ) -> tuple[Any, list[str]]:
        """The service's state folder hidden from what a record shows (engine errors, tracebacks)."""
        state = str(self.settings.state_path.absolute())
        logs = [line.replace(state, STATE_MARK) for line in logs]
        if status != "success":
            result = json.loads(json.dumps(result).replace(json.dumps(state)[1:-1], STATE_MARK))
        return result, logs

    def activations(self, namespace: str, function: str | None = None, limit: int = 50) -> list[Activation]:
        return self.catalogue.activations(namespace, function, limit)

    def activation(self, namespace: str, activation_id: str) -> Activation:
        return self.catalogue.activation(namespace, activation_id)

    # -- pools ----------------------------------------------------------------------------------

    def _pool(self, deployed: Deployed) -> VersionPool:
        with self._lock:
            pool = self._pools.get(deployed.key)
            if pool is None:
                pool = VersionPool(deployed, lambda: self._spawn(deployed), self.max_instances)
                self._pools[deployed.key] = pool
                self._start_reaper()
            return pool

    def _spawn(self, deployed: Deployed) -> Worker:
        """Start and initialise one instance (retrying when another process took its port)."""
        secrets = resolve_secrets(self.settings, deployed.namespace, deployed.secrets, deployed.function)
        env = {**deployed.env, **secrets}
        if deployed.handler:
            env["FAASPUB_HANDLER"] = deployed.handler
        executor = self.executor
        executor.prepare(deployed)
        reads = self.catalogue.local_folders(deployed.namespace, deployed.function)
        last: StartError | None = None
        for _attempt in range(START_ATTEMPTS):
            # Each instance answers only its own token: another function cannot run it.
            endpoint = Endpoint(port=free_port(), token=tokens.token_urlsafe(24))
            name = f"faaspub-{deployed.function}-{deployed.version}-{uuid.uuid4().hex[:8]}".replace("+", "-")
            spec = InstanceSpec(deployed, env, endpoint, name, reads=reads, writes=deployed.output)
            try:
                instance = executor.start(spec)
            except StartError as exc:
                last = exc
                continue
            worker = Worker(instance, [], secrets)
            init = {"value": {"name": deployed.function, "main": "main", "binary": False, "env": {}}}
            try:
                code, data = worker.channel.post("/init", json.dumps(init).encode(), timeout=60)
            except (OSError, http.client.HTTPException) as exc:
                worker.stop()
                raise InitFailed(f"{deployed.function}@{deployed.version}: init failed: {exc}") from None
            init_logs = worker.logs.take(LOG_WAIT_S)
            if code != 200:
                worker.stop()
                message = _error_text(data)
                raise InitFailed(f"{deployed.function}@{deployed.version}: init failed: {message}")
            worker.init_logs = init_logs
            return worker
        assert last is not None
        raise last

    def _close_pools(self, namespace: str, function: str, version: str | None) -> None:
        with self._lock:
            keys = [
                k for k in self._pools if k[0] == namespace and k[1] == function and version in (None, k[2])
            ]
            pools = [self._pools.pop(k) for k in keys]
        for pool in pools:
            pool.close()
            if self._executor is not None:
                self._executor.forget(pool.deployed)

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap_loop, name="local-backend-reaper", daemon=True)
            self._reaper.start()

    def _reap_loop(self) -> None:
        idle = self.settings.backend.local.idle_timeout_s
        while not self._stop.wait(min(max(idle / 4, 0.05), 30.0)):
            with self._lock:
                pools = list(self._pools.values())
            for pool in pools:
                pool.reap(idle)

    def warm_instances(self, namespace: str, function: str) -> int:
        """How many instances of ``function`` (any version) this process keeps warm."""
        with self._lock:
            return sum(p.size for k, p in self._pools.items() if k[0] == namespace and k[1] == function)

    def close(self) -> None:
        """Finish accepted non-blocking runs, then stop every instance this process started."""
        self._stop.set()
        self._async.shutdown(wait=True)
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
        if self._executor is not None:
            self._executor.close()


def _run_body(deployed: Deployed, payload: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(payload, Mapping):
        raise FaaspubError("the invoke payload must be a JSON object")
    try:
        size = len(json.dumps(payload))
    except (TypeError, ValueError) as exc:
        raise FaaspubError(f"the invoke payload is not JSON: {exc}") from None
    if size > MAX_PAYLOAD:
        raise FaaspubError(f"the invoke payload has {size} bytes; the limit is {MAX_PAYLOAD} (1 MB)")
    return {
        "value": dict(payload),
        "namespace": deployed.namespace,
        "action_name": f"/{deployed.namespace}/{deployed.function}@{deployed.version}",
    }


def _outcome(code: int, data: bytes, timeout_ms: int) -> tuple[ActivationStatus, Any]:
    """Status and result of a ``/run`` answer, classified as OpenWhisk does."""
    try:
        result = json.loads(data) if data else None
    except ValueError:
        return "developer_error", {
            "error": "The action did not produce a valid JSON response.",
            "output": data[:1000].decode("utf-8", "replace"),
        }
    if code == 200 and isinstance(result, dict | list):
        if isinstance(result, dict) and "error" in result:
            return "application_error", result
        return "success", result
    if not isinstance(result, dict):
        return "developer_error", {"error": NOT_A_RESULT}
    message = str(result.get("error", ""))
    if "exceeded its time limit" in message:
        return "timeout", {"error": timed_out_message(timeout_ms)}
    if message == NOT_A_RESULT or (code >= 500 and code != 502):
        return "developer_error", result
    return "application_error", result


def _error_text(data: bytes) -> str:
    try:
        doc = json.loads(data)
    except ValueError:
        return data[:300].decode("utf-8", "replace")
    return str(doc.get("error", doc)) if isinstance(doc, dict) else str(doc)
