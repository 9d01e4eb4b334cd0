"""Runs the runtime proxy as a plain subprocess from an unpacked image, where no container engine exists.

The image is unpacked once per digest (``publisher.oci.unpack``) under the state directory; the
proxy runs with this interpreter, ``PYTHONPATH`` pointing at the image's own paths (the proxy in
``/opt/faaspub`` and what the image adds) inside the unpacked tree, and ``FAASPUB_ACTION_DIR`` at
its ``/action``. This is **not isolated**: the function runs as the service's user with its
filesystem and network. The memory limit is applied as ``RLIMIT_DATA``, which is the closest
thing a process has. It is used only when ``backend.local.engine = "process"`` is chosen
explicitly, and the backend warns once (``faaspub status`` says so too).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from publisher.backends.catalogue import Deployed
from publisher.backends.executor import Endpoint, InstanceSpec, StartError, proxy_env, wait_ready
from publisher.backends.runlogs import LogCollector
from publisher.config import Settings
from publisher.oci.engine import image_source

# The host environment the proxy inherits; everything else comes from the image and the function.
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR")


class ProcessInstance:
    """A proxy subprocess with two reader threads feeding its log collector."""

    def __init__(self, proc: subprocess.Popen[bytes], endpoint: Endpoint) -> None:
        self.proc = proc
        self.endpoint = endpoint
        self.logs = LogCollector()
        self._open = 2
        self._lock = threading.Lock()
        assert proc.stdout is not None and proc.stderr is not None
        for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            threading.Thread(target=self._read, args=(name, pipe), daemon=True).start()

    def _read(self, stream: str, pipe: IO[bytes]) -> None:
        try:
            while chunk := pipe.read1(65536):  # type: ignore[attr-defined]
                self.logs.feed(stream, chunk)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._open -= 1
                if self._open == 0:
                    self.logs.close()

    def exit_reason(self) -> str | None:
        code = self.proc.poll()
        return None if code is None else f"exit status {code}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


class ProcessExecutor:
    """:class:`~publisher.backends.executor.Executor` without a container engine."""

    name = "process"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.state_path.resolve() / "rootfs"
        self._lock = threading.Lock()
        self._ready: dict[str, Path] = {}

    def prepare(self, deployed: Deployed) -> None:
        with self._lock:
            if deployed.digest in self._ready:
                return
            dest = self.root / deployed.digest.replace(":", "-")
            marker = dest / ".faaspub-unpacked"
            if not marker.is_file():
                from publisher.oci.unpack import unpack_image

                store, repository, digest = image_source(self.settings, deployed.image, deployed.digest)
                tmp = dest.with_name(dest.name + ".part")
                shutil.rmtree(tmp, ignore_errors=True)
                image = unpack_image(store, repository, digest, tmp, blob_cache=self.root / "blobs")
                (tmp / ".faaspub-unpacked").write_text(_image_pythonpath(image.config.env))
                shutil.rmtree(dest, ignore_errors=True)
                tmp.rename(dest)
            self._ready[deployed.digest] = dest

    def start(self, spec: InstanceSpec) -> ProcessInstance:
        deployed = spec.deployed
        self.prepare(deployed)
        rootfs = self._ready[deployed.digest]
        paths = (rootfs / ".faaspub-unpacked").read_text().split(os.pathsep)
        pythonpath = [str(rootfs / p.lstrip("/")) for p in paths if p]
        env = {k: os.environ[k] for k in INHERITED if k in os.environ}
        env.update(proxy_env(spec.env, deployed, spec.endpoint))
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        env["FAASPUB_ACTION_DIR"] = str(rootfs / "action")
        env["PYTHONUNBUFFERED"] = "1"
        memory = deployed.memory_mb * 1024 * 1024
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "faaspub_runtime.proxy"],
                cwd=rootfs / "action" if (rootfs / "action").is_dir() else rootfs,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_DATA, (memory, memory)),
                start_new_session=True,
            )
        except OSError as exc:
            raise StartError(f"cannot start the runtime for {deployed.function}: {exc}") from None
        instance = ProcessInstance(proc, spec.endpoint)
        try:
            wait_ready(spec.endpoint, instance.exit_reason, f"{deployed.function}@{deployed.version}")
        except StartError:
            instance.stop()
            raise
        return instance

    def forget(self, deployed: Deployed) -> None:
        with self._lock:
            self._ready.pop(deployed.digest, None)

    def close(self) -> None:
        """Unpacked trees stay: they are keyed by digest and reused by the next process."""


def _image_pythonpath(env: dict[str, str]) -> str:
    """The image's PYTHONPATH (the proxy lives in ``/opt/faaspub`` in faaspub base images)."""
    entries = [p for p in env.get("PYTHONPATH", "").split(":") if p]
    if "/opt/faaspub" not in entries:
        entries.append("/opt/faaspub")
    return os.pathsep.join(entries)
