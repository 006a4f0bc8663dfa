"""`segue serve` as a person runs it: the real command in a subprocess, 20 requests in a row
(resident memory measured before and after), the warning off loopback, a port in use."""

from __future__ import annotations

import io
import socket

import pytest
import soundfile as sf

from tests.serve.conftest import PROMPT, Client, anonymous_rss_mb, needs_serve_extra, serve_command

needs_serve_extra()

from segue import cli  # noqa: E402
from segue.commands.serve import exposure_warning  # noqa: E402

#: Growth of the server's anonymous resident memory allowed over 20 requests after a warm-up of
#: 10, peak of the last 5 against peak of the 5 before the 10th (the allocator's caches grow over
#: the first few requests, then the heap moves by +-8 MB from one request to the next without a
#: trend: 380-393 MB from the 2nd request to the 30th, measured alone). A leak of what one
#: request holds (its audio, its spectrogram: ~2 MB) would pass 40 MB. Total RSS is not used:
#: on a CI machine its file-backed part fell and came back by ~40 MB with the page cache.
WARM_UP, RSS_GROWTH_MB = 10, 32.0


def test_twenty_requests_in_a_row_and_the_memory_stays_flat(tmp_path, capsys):
    log, tmp = tmp_path / "serve.log", tmp_path / "tmp"
    tmp.mkdir()
    with serve_command(log=log, env={"TMPDIR": str(tmp)}) as (process, url):
        client = Client(url)
        prompt = {"audio": ("prompt-speech.wav", PROMPT.read_bytes())}
        fields = {"task": "continue", "seconds": "1", "end": "1.5"}
        heap = []  # MB after each request
        for i in range(WARM_UP + 20):  # continuations and generations, in turn
            if i % 2:
                status = client.run({**fields, "seed": i}, prompt)
            else:
                status = client.run({"task": "generate", "seconds": "1", "acoustic": "soundstorm"})
            assert status["state"] == "done", status
            audio = client.get(status["result"]["audio"]).body
            expected = 2.5 if i % 2 else 1.0
            assert sf.info(io.BytesIO(audio)).duration == pytest.approx(expected)
            assert client.get(status["result"]["image"]).body[:4] == b"\x89PNG"
            heap.append(anonymous_rss_mb(process.pid))
        assert process.poll() is None
    before, after = max(heap[WARM_UP - 5 : WARM_UP]), max(heap[-5:])
    with capsys.disabled():
        print(
            f"\nsegue serve anonymous RSS: {before:.1f} MB after {WARM_UP} requests, "
            f"{after:.1f} MB 20 later"
        )
    assert after - before < RSS_GROWTH_MB, [round(mb) for mb in heap]
    text = log.read_text()
    assert "on http://127.0.0.1:" in text and "Traceback" not in text
    assert text.count(": continue done in") == 15 and "warning" not in text
    assert process.returncode is not None and not list(tmp.iterdir())  # its uploads folder too


def test_a_warning_when_the_server_is_reachable_from_elsewhere():
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.1.1"):
        assert exposure_warning(host) is None, host
    for host in ("0.0.0.0", "192.168.1.20", "::", "myhost.example"):
        assert "not a loopback address" in exposure_warning(host), host


def test_a_port_in_use_is_a_one_line_error(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve", "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in error and "--port" in error
    assert len(error.strip().splitlines()) == 1
