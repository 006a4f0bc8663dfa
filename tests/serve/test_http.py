"""The HTTP side of `segue serve`, in this process: the page's files, a continuation end to end,
the limits and bad requests (one-line JSON errors, no traceback anywhere), clients that vanish."""

from __future__ import annotations

import io
import logging
import socket
import time

import pytest
import soundfile as sf

from tests.serve.conftest import PROMPT, Client, InProcess, multipart, needs_serve_extra

needs_serve_extra()

from segue.serve.app import LOOPBACK_NAMES, is_loopback  # noqa: E402
from segue.serve.engine import Engine, Limits  # noqa: E402

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def server(speech_model):
    from segue.serve.engine import bundled_examples

    limits = Limits(max_upload_bytes=LIMIT, abandon_seconds=1.0)
    engine = Engine(speech_model, limits, examples=bundled_examples())
    with InProcess(engine, allowed_hosts=LOOPBACK_NAMES) as live:
        yield live


@pytest.fixture
def client(server) -> Client:
    return Client(server.url)


def raw(port: int, head: str, body: bytes = b"", *, read: bool = True) -> bytes:
    """Send bytes on a socket of our own (for what urllib will not send); the reply, if read."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head.encode() + body)
        if not read:
            return b""
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_the_page_and_its_files(client):
    page = client.get("/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert b'id="continue-file"' in page.body and b"/app.js" in page.body
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/style.css").headers["content-type"].startswith("text/css")
    info = client.get("/api/info").json()
    assert info["max_prompt_seconds"] == pytest.approx(9.96) and info["soundstorm"] is True
    assert info["max_upload_bytes"] == LIMIT and info["max_seconds"] == 30
    assert [e["name"] for e in info["examples"]] == ["prompt-real", "prompt-speech"]
    example = client.get("/api/examples/prompt-speech.wav")
    assert example.body == PROMPT.read_bytes()
    for path in ("/nothing", "/api/examples/..%2F..%2Fpyproject.toml.wav", "/api/jobs/nope"):
        reply = client.get(path)
        assert reply.status == 404 and "error" in reply.json(), path
    assert client.request("/api/info", b"", method="POST").json() == {"error": "method not allowed"}


def test_a_continuation_of_the_bundled_prompt(client):
    files = {"audio": ("prompt-speech.wav", PROMPT.read_bytes())}
    status = client.run({"task": "continue", "seconds": "2", "seed": "5"}, files)
    assert status["state"] == "done", status
    assert status["stages"] == ["tokenize", "semantic", "coarse", "fine", "decode"]
    result = status["result"]
    assert result["prompt_seconds"] == 3.0 and result["seconds"] == 5.0
    assert "3.00 s prompt + 2 s continuation" in result["summary"]
    audio = client.get(result["audio"])
    assert audio.headers["content-type"] == "audio/wav"
    assert sf.info(io.BytesIO(audio.body)).duration == pytest.approx(5.0)
    part = client.get(result["audio"], Range="bytes=0-11")
    assert part.status == 206 and part.body == audio.body[:12]
    assert part.headers["content-range"] == f"bytes 0-11/{len(audio.body)}"
    image = client.get(result["image"])
    assert image.headers["content-type"] == "image/png" and image.body[:4] == b"\x89PNG"


def one_line_error(reply, status: int, text: str) -> None:
    assert reply.status == status, reply.body
    message = reply.json()["error"]
    assert text in message, message
    assert "\n" not in message and "Traceback" not in message and "/tmp" not in message


@pytest.mark.parametrize(
    ("fields", "files", "status", "text"),
    [
        (
            {"seconds": "2"},
            {"audio": ("notes.txt", b"meeting notes\n" * 40)},
            400,
            "notes.txt: not",
        ),
        ({"seconds": "2"}, {"audio": ("empty.wav", b"")}, 400, "empty.wav: empty file"),
        ({"seconds": "2"}, {}, 400, "give a prompt"),
        ({"seconds": "45"}, {"audio": ("p.wav", b"x")}, 400, "<= 30, got 45"),
        ({"seconds": "2", "end": "20"}, {"audio": ("p.wav", b"x")}, 400, "up to 9.96 s"),
        ({"seconds": "2"}, {"audio": ("big.wav", b"x" * (LIMIT + 1))}, 400, "over the limit"),
    ],
)
def test_bad_requests_are_one_line_errors(client, caplog, fields, files, status, text):
    caplog.set_level(logging.INFO)
    reply = client.submit({"task": "continue", **fields}, files)
    one_line_error(reply, 413 if "big" in str(files) else status, text)
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


def test_requests_from_elsewhere_are_refused(client, server):
    one_line_error(
        client.submit({"task": "generate", "seconds": "1"}, client_header=False),
        403,
        "submitted by the page",
    )
    one_line_error(client.get("/api/info", Host="evil.example:7860"), 400, "answers to")
    assert client.get("/api/info", Host=f"localhost:{server.port}").status == 200
    assert client.get("/api/info", Host=f"[::1]:{server.port}").status == 200
    assert is_loopback("127.0.0.2") and is_loopback("::1") and not is_loopback("0.0.0.0")


def test_an_upload_over_the_limit_is_refused_before_it_is_read(server, caplog):
    caplog.set_level(logging.INFO)
    post = (
        "POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Segue-Client: t\r\nConnection: close\r\n"
    )
    head = (
        post + "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 52428800\r\n\r\n"
    )
    reply = raw(server.port, head).decode()
    assert reply.startswith("HTTP/1.1 413") and "the upload is 50 MB, over the limit" in reply
    reply = raw(server.port, post + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").decode()
    assert reply.startswith("HTTP/1.1 411") and "Content-Length" in reply
    assert not [r for r in caplog.records if r.exc_info]


def test_clients_that_vanish_do_not_break_the_server(server, client, caplog):
    caplog.set_level(logging.INFO)
    body, kind = multipart(
        {"task": "continue", "seconds": "1"}, {"audio": ("p.wav", PROMPT.read_bytes())}
    )
    head = (
        f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Segue-Client: test\r\n"
        f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    raw(server.port, head, body[: len(body) // 2], read=False)  # gone mid-upload
    raw(server.port, "GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", read=False)
    # Gone mid-generation: a long job that nobody asks about is stopped at its next stage.
    job = client.submit({"task": "generate", "seconds": "20"}).json()
    while server.engine.queue()["running"] == 0 and client.get(f"/api/jobs/{job['id']}"):
        time.sleep(0.02)
    end = time.monotonic() + 60
    while server.engine.queue()["running"] and time.monotonic() < end:
        time.sleep(0.05)
    assert client.get(f"/api/jobs/{job['id']}").json()["state"] == "cancelled"
    # The page's Cancel (and its pagehide beacon) stop a job at once.
    job = client.submit({"task": "generate", "seconds": "20"}).json()
    assert client.request(f"/api/jobs/{job['id']}/cancel", b"", method="POST").status == 200
    assert client.wait(job["id"])["state"] == "cancelled"
    status = client.run({"task": "generate", "seconds": "0.5", "acoustic": "soundstorm"})
    assert status["state"] == "done"  # and the server goes on
    assert not [r for r in caplog.records if r.exc_info]
