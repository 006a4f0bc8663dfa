"""segue.serve without HTTP: the form checks, the decoding of uploads, the queue and its worker."""

from __future__ import annotations

import io
import logging
import time

import numpy as np
import pytest
import soundfile as sf

from tests.serve.conftest import PROMPT, needs_serve_extra

needs_serve_extra()

from segue.serve.engine import Engine, Limits, Settings, UserError, bundled_examples  # noqa: E402
from segue.serve.forms import display_name, parse_job  # noqa: E402


def wav(audio: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def wait_idle(engine: Engine, timeout: float = 120.0) -> None:
    """Until the worker has nothing to do (without touching any job, as a poll would)."""
    end = time.monotonic() + timeout
    while engine.queue() != {"running": 0, "waiting": 0}:
        assert time.monotonic() < end, "the engine is still busy"
        time.sleep(0.05)


@pytest.fixture
def engine(speech_model):
    engine = Engine(speech_model, Limits(max_upload_bytes=256 * 1024), start=False)
    yield engine
    engine.close()


PROMPT_FILE = {"audio": ("prompt-speech.wav", PROMPT.read_bytes())}


@pytest.mark.parametrize(
    ("fields", "files", "message"),
    [
        ({"task": "dance"}, {}, "task must be one of continue, generate, resynth"),
        ({"task": "generate"}, {}, "give the seconds to generate"),
        ({"task": "generate", "seconds": "ten"}, {}, "seconds to generate must be a number"),
        ({"task": "generate", "seconds": "31"}, {}, "must be > 0 and <= 30, got 31"),
        ({"task": "generate", "seconds": "0"}, {}, "must be > 0 and <= 30, got 0"),
        ({"task": "generate", "seconds": "nan"}, {}, "must be > 0 and <= 30, got nan"),
        ({"task": "generate", "seconds": "1", "acoustic": "x"}, {}, "acoustic must be ar or"),
        (
            {"task": "generate", "seconds": "1", "temperature_coarse": "3"},
            {},
            "the coarse temperature must be >= 0 and <= 2, got 3",
        ),
        ({"task": "generate", "seconds": "1", "seed": "1.5"}, {}, "whole number, got 1.5"),
        ({"task": "continue", "seconds": "1"}, {}, "give a prompt: upload a file, record one"),
        (
            {"task": "continue", "seconds": "1", "end": "12"},
            PROMPT_FILE,
            "the prompt span is 12 s (0 to 12 s); this model reads prompts up to 9.96 s",
        ),
        ({"task": "continue", "seconds": "1", "start": "2", "end": "1"}, PROMPT_FILE, "before"),
        (
            {"task": "continue", "seconds": "1", "start": "5", "end": "6"},
            PROMPT_FILE,
            "the prompt starts at 5 s, after the end of the file (3.00 s)",
        ),
        ({"task": "resynth"}, {}, "give the audio to resynthesize"),
    ],
)
def test_each_field_is_checked_with_a_message_naming_it(engine, fields, files, message):
    with pytest.raises(UserError, match=None) as caught:
        parse_job(engine, fields, files)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_good_form_gives_the_prompt_span_at_the_model_rate(engine):
    fields = {"task": "continue", "seconds": "2", "start": "0.5", "end": "2.5", "seed": "7"}
    fields |= {"temperature_semantic": "0.7", "acoustic": "soundstorm", "temperature_fine": "1"}
    settings = parse_job(engine, fields, PROMPT_FILE)
    assert settings.audio.shape == (32000,) and settings.audio.dtype == np.float32
    assert (settings.seconds, settings.seed, settings.acoustic) == (2.0, 7, "soundstorm")
    assert settings.temperatures == {"semantic": 0.7}  # SoundStorm has no fine temperature
    # Past the end, the span is cut at the file's end.
    settings = parse_job(engine, {"task": "continue", "seconds": "1", "end": "9"}, PROMPT_FILE)
    assert len(settings.audio) == 48000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file (0 bytes)"),
        (b"hello, this is text\n" * 50, "not a readable audio file"),
        (wav(np.zeros(16000, np.float32)), "the prompt is silent"),
        (wav(0.5 * np.ones(100, np.float32)), "too short to read: give at least 0.1 s"),
        (PROMPT.read_bytes()[:20000] + b"", "truncated"),
        (b"x" * (300 * 1024), "300 KB is over the limit of 256 KB"),
    ],
)
def test_bad_uploads_are_one_line_errors_naming_the_file(engine, data, message):
    with pytest.raises(UserError) as caught:
        engine.decode(data, "upload.wav", "prompt", duration=3.0)
    text = str(caught.value)
    assert text.startswith("upload.wav: ") and message in text
    assert "\n" not in text and "/tmp" not in text  # the server's own file is never named
    assert not list(engine._tmp.iterdir())  # and it is removed


def test_resynthesis_inputs_are_capped(engine):
    long = wav(0.3 * np.sin(np.arange(31 * 2000) / 5).astype(np.float32), 2000)
    fields = {"task": "resynth"}
    with pytest.raises(UserError, match=r"31.0 s long, over the limit of 30 s"):
        parse_job(engine, fields, {"audio": ("long.wav", long)})
    voice = {"voice": ("long voice.wav", long)}
    settings = parse_job(engine, fields, {**PROMPT_FILE, **voice})
    assert len(settings.voice) == 10 * 16000  # the first max_voice_seconds


def test_display_names_are_names_not_paths():
    assert display_name("../../etc/passwd", "audio") == "passwd"
    assert display_name("C:\\Users\\me\\voice <1>.wav", "audio") == "voice _1_.wav"
    assert display_name("", "audio") == "audio"
    assert len(display_name("a" * 500, "audio")) == 60


def test_one_job_at_a_time_in_order_with_a_bounded_queue(engine, speech_model):
    engine.limits = Limits(max_waiting=2)
    first = engine.submit(Settings("generate", seconds=0.5, seed=1))
    second = engine.submit(Settings("generate", seconds=0.5, acoustic="soundstorm"))
    assert engine.status(first.id)["ahead"] == 0 and engine.status(second.id)["ahead"] == 1
    with pytest.raises(UserError, match="the queue is full") as full:
        engine.submit(Settings("generate", seconds=0.5))
    assert full.value.status == 503
    engine.cancel(first.id)
    assert engine.status(first.id)["state"] == "cancelled"
    assert engine.status(second.id)["ahead"] == 0
    engine.start()
    wait_idle(engine)
    status = engine.status(second.id)
    assert status["state"] == "done", status
    assert status["stages"] == ["semantic", "soundstorm", "decode"]
    assert list(status["timings"]) == status["stages"] and status["stage"] == 3
    assert isinstance(status["seed"], int)  # drawn, and reported so it can be replayed
    result = engine.result(second.id)
    assert sf.info(io.BytesIO(result.wav)).duration == pytest.approx(0.5)
    assert result.png[:4] == b"\x89PNG"
    assert engine.model is speech_model  # loaded once, by the caller


def test_a_job_nobody_asks_about_is_dropped_then_stopped(engine):
    engine.limits = Limits(abandon_seconds=0.3)
    queued = engine.submit(Settings("generate", seconds=0.5))
    time.sleep(0.5)  # its page went away before it started
    engine.start()
    wait_idle(engine)
    assert engine.status(queued.id)["state"] == "cancelled"
    running = engine.submit(Settings("generate", seconds=20.0))
    while engine.status(running.id)["state"] == "queued":
        time.sleep(0.02)
    wait_idle(engine)  # no more polls: it stops at its next stage
    status = engine.status(running.id)
    assert status["state"] == "cancelled" and status["stage"] < len(status["stages"])
    job = engine.submit(Settings("generate", seconds=0.5))
    while engine.status(job.id)["state"] in ("queued", "running"):
        time.sleep(0.05)
    assert engine.status(job.id)["state"] == "done"  # the worker goes on


def test_failures_are_one_line_in_the_status_and_the_log(engine, caplog, monkeypatch):
    engine.start()
    caplog.set_level(logging.INFO, logger="segue.serve")
    too_long = (0.3 * np.sin(np.arange(11 * 16000) / 5)).astype(np.float32)
    job = engine.submit(Settings("continue", seconds=1.0, audio=too_long))
    wait_idle(engine)
    status = engine.status(job.id)
    assert status["state"] == "error" and "fills the semantic LM's context" in status["error"]

    def broken(*args, **kwargs):
        raise RuntimeError("out of\nluck")

    monkeypatch.setattr(engine.model, "generate", broken)
    job = engine.submit(Settings("generate", seconds=1.0))
    wait_idle(engine)
    assert engine.status(job.id)["error"] == "generation failed (RuntimeError: out of luck)"
    records = [r for r in caplog.records if r.name == "segue.serve" and r.levelno >= logging.INFO]
    assert len(records) == 2 and all(r.exc_info is None for r in records)
    assert all("\n" not in r.getMessage() for r in records)


def test_finished_results_are_kept_a_bounded_while(engine):
    engine.limits = Limits(keep_results=2)
    engine.start()
    jobs = [engine.submit(Settings("generate", seconds=0.2, seed=i)) for i in range(3)]
    wait_idle(engine)
    with pytest.raises(UserError, match="no job") as gone:
        engine.status(jobs[0].id)
    assert gone.value.status == 404
    assert [engine.status(j.id)["state"] for j in jobs[1:]] == ["done", "done"]
    assert all(engine._jobs[j.id].settings.audio is None for j in jobs[1:])  # inputs let go


def test_the_bundled_prompts_are_the_examples():
    examples = bundled_examples()
    assert list(examples) == ["prompt-real", "prompt-speech"]
    assert examples["prompt-speech"].seconds == pytest.approx(3.0)
    assert examples["prompt-speech"].title.startswith("And they said")
    # a real voice held out of training (the TTS one above is a held-out TTS voice)
    assert examples["prompt-real"].seconds == pytest.approx(3.0)
    assert examples["prompt-real"].title.startswith("A real voice held out of training")
