"""The model behind `segue serve`: one AudioLM, loaded once; one worker thread runs one job at a
time, in the order they came; the others wait in a bounded queue that the page shows.

    engine = Engine(AudioLM.from_pretrained(path), Limits(max_seconds=30))
    job = engine.submit(Settings("continue", seconds=2.0, audio=prompt))
    engine.status(job.id)   # {"state": "queued" | "running" | "done" | "error" | "cancelled", ...}
    engine.result(job.id)   # Result: the WAV and the spectrogram PNG, as bytes

A job whose page stopped asking about it (closed tab, lost network) for `abandon_seconds` is
dropped from the queue, or stopped at its next stage when it is running, so a vanished client
does not hold the model. Finished results are kept (in memory) for `keep_seconds`, at most
`keep_results` of them. Nothing here reads or writes a path that a client names: uploads are
written to files this engine names in its own temporary folder, read and removed.
"""

from __future__ import annotations

import collections
import functools
import io
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from segue.errors import InputError

log = logging.getLogger("segue.serve")

ASSETS = Path(__file__).resolve().parent.parent / "assets"
STAGES = ("semantic", "coarse", "fine")


def tasks() -> tuple[str, ...]:
    """The tasks a job may ask for: the pipeline's (imported when needed: this module loads
    without torch)."""
    from segue.pipeline import TASK_STAGES

    return tuple(TASK_STAGES)


#: Shorter inputs are refused (the models read audio in 40 ms frames).
MIN_SECONDS = 0.1


@dataclass(frozen=True)
class Limits:
    """What one server accepts; the page shows these numbers and checks them before uploading."""

    max_seconds: float = 30.0  # audio one job generates, and the length of a file to resynthesize
    max_upload_bytes: int = 20 * 1024 * 1024  # one request's body
    max_voice_seconds: float = 10.0  # of a resynthesis voice, the first ones are used
    max_waiting: int = 8  # jobs queued behind the running one
    keep_results: int = 8  # finished jobs whose results can still be fetched
    keep_seconds: float = 900.0
    abandon_seconds: float = 90.0  # a job nobody asked about for this long is dropped


class UserError(InputError):
    """A request the server refuses: a one-line message for the page, and its HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Settings:
    """One checked job. audio: the prompt (continue) or the input (resynth), voice: the optional
    voice of resynth, both float32 mono at the model's rate; temperatures: the stages given."""

    task: str
    seconds: float = 0.0
    acoustic: str = "ar"
    temperatures: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    audio: np.ndarray | None = None
    voice: np.ndarray | None = None
    name: str = ""  # the upload's file name, for messages only


@dataclass
class Result:
    wav: bytes
    png: bytes
    seconds: float
    prompt_seconds: float | None


@dataclass(frozen=True)
class Example:
    """A bundled prompt the page offers with one click."""

    name: str
    path: Path
    title: str
    seconds: float


class _Cancelled(Exception):
    """Raised by the progress hook to stop a cancelled or abandoned job at a stage boundary."""


@dataclass
class Job:
    id: str
    settings: Settings
    stages: list[str]
    created: float
    seen: float
    state: str = "queued"
    stage: int = 0  # index of the running stage; len(stages) when done
    timings: dict[str, float] = field(default_factory=dict)
    started: float | None = None
    stage_started: float | None = None
    finished: float | None = None
    error: str | None = None
    result: Result | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    summary: str = ""


def bundled_examples(folder: Path = ASSETS) -> dict[str, Example]:
    """The prompts shipped in segue/assets (prompt-*.wav, with a .json of their title or text)."""
    from segue import audio as audio_io

    examples = {}
    for path in sorted(folder.glob("prompt-*.wav")):
        meta_path = path.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        title = str(meta.get("title") or meta.get("text") or path.stem)
        examples[path.stem] = Example(path.stem, path, title, audio_io.info(path).duration)
    return examples


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """Mono float audio -> a 16-bit PCM WAV file, in memory (clipped to [-1, 1])."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


class Engine:
    """One model, one worker thread, a queue; thread-safe (the HTTP server calls it from its
    event loop and its thread pool)."""

    def __init__(
        self,
        model: Any,
        limits: Limits | None = None,
        *,
        examples: dict[str, Example] | None = None,
        start: bool = True,
    ):
        self.model = model
        self.limits = limits or Limits()
        self.examples = dict(examples or {})
        self._jobs: dict[str, Job] = {}
        self._waiting: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._tmp = Path(tempfile.mkdtemp(prefix="segue-serve-"))
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    # ---- life
    def start(self) -> None:
        """Start the worker (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="segue-serve", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker (the running job at its next stage) and remove the temporary folder."""
        with self._lock:
            self._closing = True
            for job in [*self._waiting, *filter(None, [self._running])]:
                job.cancelled.set()
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        shutil.rmtree(self._tmp, ignore_errors=True)

    # ---- what the page asks
    def info(self) -> dict[str, Any]:
        """The model and the limits, for the page."""
        model, limits = self.model, self.limits
        return {
            "model": str(model.info.get("name") or "AudioLM bundle"),
            "sample_rate": model.sample_rate,
            "max_prompt_seconds": round(model.max_prompt_seconds, 2),
            "max_seconds": limits.max_seconds,
            "max_voice_seconds": limits.max_voice_seconds,
            "max_upload_bytes": limits.max_upload_bytes,
            "soundstorm": model.soundstorm is not None,
            "temperatures": {s: getattr(model.sampling, s).temperature for s in STAGES},
            "examples": [
                {"name": e.name, "title": e.title, "seconds": round(e.seconds, 2)}
                for e in self.examples.values()
            ],
            "queue": self.queue(),
        }

    def queue(self) -> dict[str, int]:
        with self._lock:
            return {"running": int(self._running is not None), "waiting": len(self._waiting)}

    def submit(self, settings: Settings) -> Job:
        """Queue a checked job; UserError (503) when the queue is full."""
        if settings.task not in tasks():
            raise UserError(f"unknown task {settings.task!r}: one of {', '.join(tasks())}")
        if settings.seed is None:
            settings = replace(settings, seed=secrets.randbelow(2**31))
        from segue.pipeline import stage_names

        now = time.monotonic()
        names = stage_names(settings.task, settings.acoustic)
        job = Job(secrets.token_urlsafe(12), settings, names, now, now)
        with self._lock:
            self._prune(now)
            if self._closing:
                raise UserError("the server is stopping", 503)
            if len(self._waiting) >= self.limits.max_waiting:
                raise UserError(
                    f"the queue is full ({len(self._waiting)} generations waiting): try again "
                    "in a minute",
                    503,
                )
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._wake.notify_all()
        return job

    def status(self, job_id: str) -> dict[str, Any]:
        """Where a job is (and a sign of life from its page: it is not abandoned)."""
        with self._lock:
            job = self._job(job_id)
            job.seen = time.monotonic()
            ahead = None
            if job.state == "queued":
                ahead = [j.id for j in self._waiting].index(job.id) + int(bool(self._running))
            out: dict[str, Any] = {
                "id": job.id,
                "task": job.settings.task,
                "state": job.state,
                "ahead": ahead,
                "stages": list(job.stages),
                "stage": job.stage,
                "timings": {k: round(v, 2) for k, v in job.timings.items()},
                "seed": job.settings.seed,
                "error": job.error,
                "queue": {"running": int(self._running is not None), "waiting": len(self._waiting)},
            }
            if job.result is not None:
                out["result"] = {
                    "audio": f"/api/jobs/{job.id}/output.wav",
                    "image": f"/api/jobs/{job.id}/spectrogram.png",
                    "seconds": round(job.result.seconds, 3),
                    "prompt_seconds": job.result.prompt_seconds,
                    "summary": job.summary,
                    "elapsed": round((job.finished or 0.0) - (job.started or 0.0), 2),
                }
            return out

    def cancel(self, job_id: str) -> None:
        """Drop a queued job, or stop a running one at its next stage."""
        with self._lock:
            job = self._job(job_id)
            job.cancelled.set()
            if job in self._waiting:
                self._waiting.remove(job)
                self._finish(job, "cancelled")

    def result(self, job_id: str) -> Result:
        with self._lock:
            job = self._job(job_id)
            if job.result is None:
                raise UserError(f"job {job_id} has no result ({job.state})", 404)
            return job.result

    # ---- uploads
    def decode(
        self,
        data: bytes,
        name: str,
        what: str,
        *,
        offset: float = 0.0,
        duration: float | None = None,
        max_seconds: float | None = None,
    ) -> np.ndarray:
        """An uploaded file -> float32 mono at the model's rate, the segment [offset, offset +
        duration) only; UserError with a one-line message when it is not usable audio."""
        from segue import audio as audio_io
        from segue.pipeline import SILENCE_PEAK

        if not data:
            raise UserError(f"{name}: empty file (0 bytes)")
        if len(data) > self.limits.max_upload_bytes:
            raise UserError(
                f"{name}: {size_text(len(data))} is over the limit of "
                f"{size_text(self.limits.max_upload_bytes)}",
                413,
            )
        handle, tmp = tempfile.mkstemp(suffix=".upload", dir=self._tmp)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            try:
                length = audio_io.info(tmp).duration
                if offset >= length:
                    raise UserError(
                        f"{name}: the {what} starts at {offset:g} s, after the end of the file "
                        f"({length:.2f} s)"
                    )
                if max_seconds is not None and length - offset > max_seconds:
                    raise UserError(
                        f"{name}: the {what} is {length - offset:.1f} s long, over the limit of "
                        f"{max_seconds:g} s: cut it shorter"
                    )
                audio = audio_io.load(tmp, self.model.sample_rate, offset=offset, duration=duration)
            except audio_io.AudioError as error:
                raise UserError(f"{name}: {error.cause}") from None
        finally:
            os.unlink(tmp)
        if audio.size < max(self.model.semantic_hop, MIN_SECONDS * self.model.sample_rate):
            raise UserError(
                f"{name}: the {what} is {audio.size / self.model.sample_rate:.3f} s "
                f"long, too short to read: give at least {MIN_SECONDS:g} s"
            )
        if float(np.abs(audio).max()) < SILENCE_PEAK:  # refused early, as the pipeline would
            raise UserError(f"{name}: the {what} is silent")
        return audio

    # ---- the worker
    def _job(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            keep = f"{self.limits.keep_seconds / 60:g} minutes"
            raise UserError(f"no job {job_id[:40]!r} here (results are kept {keep})", 404)
        return job

    def _abandoned(self, job: Job, now: float) -> bool:
        return now - job.seen > self.limits.abandon_seconds

    def _finish(self, job: Job, state: str, error: str | None = None) -> None:
        """(Under the lock.) A job's end: its inputs are let go, its result (if any) kept."""
        job.state, job.error, job.finished = state, error, time.monotonic()
        job.settings = replace(job.settings, audio=None, voice=None)

    def _prune(self, now: float) -> None:
        """(Under the lock.) Forget finished jobs past keep_seconds, and beyond keep_results."""
        done = [j for j in self._jobs.values() if j.finished is not None]
        done.sort(key=lambda j: j.finished or 0.0)
        extra = len(done) - self.limits.keep_results
        for i, job in enumerate(done):
            if i < extra or now - (job.finished or now) > self.limits.keep_seconds:
                del self._jobs[job.id]

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closing:
                    self._wake.wait(timeout=30.0)
                    self._prune(time.monotonic())
                if self._closing:
                    return
                job = self._waiting.popleft()
                now = time.monotonic()
                if job.cancelled.is_set() or self._abandoned(job, now):
                    self._finish(job, "cancelled", "cancelled: its page went away")
                    log.info("job %s: dropped, its page went away", job.id)
                    continue
                self._running, job.state, job.started = job, "running", now
            state, error, result = "error", None, None
            try:
                result = self._run(job)
                state = "done"
            except _Cancelled:
                state, error = "cancelled", "cancelled"
            except (UserError, ValueError) as failure:  # the model's own checks: one line
                error = _one_line(failure)
            except Exception as failure:  # a bug: one line in the log, the traceback in debug
                error = f"generation failed ({type(failure).__name__}: {_one_line(failure)})"
                log.debug("job %s failed", job.id, exc_info=True)
            with self._lock:
                self._running = None
                job.result = result
                if state == "done":
                    job.stage = len(job.stages)
                self._finish(job, state, error)
                self._prune(time.monotonic())
            seconds = (job.finished or 0.0) - (job.started or 0.0)
            outcome = job.summary if state == "done" else error
            log.info(
                "job %s: %s %s in %.1f s: %s", job.id, job.settings.task, state, seconds, outcome
            )

    def _progress(self, job: Job, name: str) -> None:
        """The pipeline's stage hook: record the stage; stop a job nobody waits for."""
        now = time.monotonic()
        with self._lock:
            if job.cancelled.is_set() or self._abandoned(job, now):
                raise _Cancelled
            self._time_stage(job, now)
            if name not in job.stages:  # a stage the pipeline has and this list lacks
                job.stages.insert(len(job.stages) - 1, name)
            job.stage, job.stage_started = job.stages.index(name), now

    @staticmethod
    def _time_stage(job: Job, now: float) -> None:
        if job.stage_started is not None:
            job.timings[job.stages[job.stage]] = now - job.stage_started

    def _run(self, job: Job) -> Result:
        import torch

        s, model = job.settings, self.model
        sampling = model.sampling
        for stage, temperature in s.temperatures.items():
            sampling = replace(
                sampling, **{stage: replace(getattr(sampling, stage), temperature=temperature)}
            )
        common = {"seed": s.seed, "sampling": sampling, "acoustic": s.acoustic}
        hook = functools.partial(self._progress, job)
        prompt_seconds = None
        if s.task == "continue":
            prompt_seconds = round(len(s.audio) / model.sample_rate, 3)
            out = model.continue_(
                torch.from_numpy(s.audio)[None], s.seconds, progress=hook, **common
            )
            summary = f"{prompt_seconds:.2f} s prompt + {s.seconds:g} s continuation"
        elif s.task == "generate":
            out = model.generate(s.seconds, progress=hook, **common)
            summary = f"{s.seconds:g} s from nothing"
        else:
            voice = None if s.voice is None else torch.from_numpy(s.voice)[None]
            out = model.resynthesize(
                torch.from_numpy(s.audio)[None], voice, progress=hook, **common
            )
            summary = "resynthesized" + (" in the voice given" if voice is not None else "")
        with self._lock:
            self._time_stage(job, time.monotonic())
        audio = out[0].detach().cpu().numpy().astype(np.float32)
        del out
        job.summary = f"{summary}, {s.acoustic}, seed {s.seed}"
        png = self._spectrogram(audio, prompt_seconds, f"{s.task}: {job.summary}")
        return Result(
            wav_bytes(audio, model.sample_rate), png, len(audio) / model.sample_rate, prompt_seconds
        )

    def _spectrogram(self, audio: np.ndarray, prompt_seconds: float | None, title: str) -> bytes:
        from segue.plot import plot_spectrogram

        handle, tmp = tempfile.mkstemp(suffix=".png", dir=self._tmp)
        os.close(handle)
        try:
            plot_spectrogram(audio, self.model.sample_rate, tmp, prompt_seconds, title=title)
            return Path(tmp).read_bytes()
        finally:
            os.unlink(tmp)


def size_text(size: float) -> str:
    """A size in bytes for a message: "256 KB", "20 MB", "20.5 MB"."""
    if size < 2**20:
        return f"{size / 1024:.0f} KB"
    return f"{size / 2**20:.1f} MB".replace(".0 MB", " MB")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:500] if text else type(error).__name__
