"""`segue serve` test helpers: a server in this process (uvicorn in a thread) or as the real
command (a subprocess), a multipart encoder and small HTTP helpers on urllib (no extra client).
Every server listens on 127.0.0.1 on a free port; every request goes there."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from segue.commands.generate import DEFAULT_MODEL

PROMPT = DEFAULT_MODEL.parent / "prompt-speech.wav"
ROOT = Path(__file__).resolve().parents[2]


def needs_serve_extra() -> None:
    """Skip the calling test module when the serve extra is not installed."""
    for module in ("starlette", "uvicorn", "python_multipart"):
        pytest.importorskip(module, reason="the serve extra is not installed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data request."""
    boundary = f"segue-{secrets.token_hex(8)}"
    parts = []
    for key, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
        parts.append(head.encode() + str(value).encode() + b"\r\n")
    for key, (name, data) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class Client:
    """GET and POST to one server, returning every status (no exception on 4xx/5xx)."""

    def __init__(self, url: str):
        self.url = url

    def request(
        self, path: str, data: bytes | None = None, headers: dict | None = None, method=None
    ) -> Reply:
        request = urllib.request.Request(
            self.url + path, data=data, headers=headers or {}, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, dict(error.headers), error.read())

    def get(self, path: str, **headers) -> Reply:
        return self.request(path, headers=headers)

    def submit(
        self, fields: dict, files: dict | None = None, *, client_header: bool = True
    ) -> Reply:
        body, kind = multipart({k: str(v) for k, v in fields.items()}, files or {})
        headers = {"Content-Type": kind}
        if client_header:
            headers["X-Segue-Client"] = "test"
        return self.request("/api/jobs", body, headers, "POST")

    def wait(self, job_id: str, timeout: float = 120.0) -> dict:
        """Poll a job (as the page does) until it ends; its last status."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            status = self.get(f"/api/jobs/{job_id}").json()
            if status["state"] not in ("queued", "running"):
                return status
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} still running after {timeout} s")

    def run(self, fields: dict, files: dict | None = None) -> dict:
        reply = self.submit(fields, files)
        assert reply.status == 202, reply.body
        return self.wait(reply.json()["id"])


class InProcess:
    """create_app(engine) served by uvicorn on a thread of this process."""

    def __init__(self, engine, **app_options):
        import uvicorn

        from segue.serve.app import create_app

        self.engine = engine
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(engine, **app_options),
            host="127.0.0.1",
            port=self.port,
            log_config=None,  # records go to the root logger, where caplog sees them
            log_level="info",
            access_log=False,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> InProcess:
        self.thread.start()
        end = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < end, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.engine.close()


@pytest.fixture(scope="session")
def speech_model():
    """The packaged bundle, loaded once for every in-process test."""
    from segue.pipeline import AudioLM

    return AudioLM.from_pretrained(DEFAULT_MODEL)


def anonymous_rss_mb(pid: int) -> float:
    """Resident anonymous memory of a process (MB, `RssAnon` in /proc): the heap, where a leak
    shows. The file-backed part (libraries, the mapped weights) is left out: the kernel drops and
    re-reads those pages as the machine's page cache comes and goes, by tens of MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no RssAnon for {pid}")


@contextlib.contextmanager
def serve_command(
    *args: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen, str]]:
    """`segue serve --port FREE ARGS` as a subprocess; yields (process, url) once it answers;
    stops it with SIGTERM (as a service manager would)."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable, "-m", "segue.cli", "serve", "--port", str(port), "--threads", "1"]
    with log.open("wb") as out:
        process = subprocess.Popen([*command, *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"segue serve exited: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url + "/api/info", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)
        yield process, url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
