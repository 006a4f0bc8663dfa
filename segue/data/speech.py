"""Multi-speaker English speech corpus, synthesised with the Debian TTS engines.

Design
------
* **Speakers.** A speaker is one engine voice x variant x pitch x rate (x warp), fixed for good,
  so each speaker is a consistent voice. The catalogue (`SPEAKERS`, ~130 voices) covers
  espeak-ng (8 English accents x voice variants, `-p` pitch, `-s` words per minute), flite
  (slt, awb, kal16 with a target F0; rms; rate via `duration_stretch`) and festival (kal and ked
  diphones with a target F0, the slt HTS voice; rate via `Duration_Stretch` / HTS `-r`).
  flite/festival voices are also "warped": the waveform is resampled as if recorded at
  `rate * warp`, which moves pitch *and* formants (a longer or shorter vocal tract) and makes
  new-sounding voices out of the few base voices; the engine is asked for `pitch / warp` and a
  `stretch * warp` duration so that the id's pitch and rate are what comes out. Each speaker has
  a stable, filesystem-safe id such as `espeak-en-us-f3-p50-s160` or `flite-slt-f190-w106-d110`.
* **Splits by speaker.** About 10 % of the voices of every engine (at least one per engine) are
  held out for `valid` and as many for `test`, chosen by a hash of the speaker id: the split
  of a voice never depends on the seed, so corpora built with different seeds can be merged.
  `group` = speaker id; every utterance of a held-out voice carries that voice's split.
* **Text** (`segue.data.speech_text`). The King James Bible (`bible` from bible-kjv) and a
  hand-picked set of `fortunes` files, cleaned for TTS (no verse numbers, digits, brackets,
  quotes or odd characters; all-caps words such as LORD spelt as words) and cut into utterances
  of 8-32 words (about 3-15 s of speech): verses of a chapter are joined and cut at clause
  punctuation, long clauses at commas. Duplicate texts are dropped. The seed shuffles the text
  and sets the cut points. About 8 % of the utterances form the evaluation pool (half valid,
  half test); training text never contains an evaluation sentence.
* **Parallel evaluation sentences.** Every evaluation sentence is spoken by `PARALLEL_VOICES`
  (3) held-out voices of its split, as consecutive items sharing `meta["sentence_id"]`, so a
  semantic-token evaluation can compare one sentence across voices.
* **Parallel training sentences (optional).** With `train_parallel` = N > 1 the train voices
  also speak in groups of N, one sentence per group: the same sentence in N training voices,
  what the semantic model's cross-voice alignment loss needs (`segue.semantic.invariance`).
  The default (1) gives every training sentence one voice, as before.
* **Item stream.** `speech_items(seed)` runs in rounds; in each round every speaker speaks once
  (train speakers in a shuffled order, the held-out groups spread evenly through the round), so
  even a short corpus has many voices and the held-out share equals the held-out voice share
  (~20 %). Texts are used once per pass over the pool; a later pass adds `-e<pass>` to the uid.
* **Rendering.** `render_speech` runs the engine in a temporary folder (with a timeout), loads
  the wav at 16 kHz (soxr), trims leading/trailing silence to 0.15 s margins and peak-normalises.

`make_speech_corpus` hands both to the shared resumable runner (`segue.data.corpus`).
Measured on 2 shared CPU cores, 2 workers: 0.2 h (98 files, 98 voices) in 15 s, i.e. ~50 s of
audio per wall second (~60 once the ~3 s text preparation is done; festival's start-up and the
flite clustergen voices cost the most, espeak is nearly free).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from segue import audio as audio_io
from segue.data.corpus import BuildSummary, CorpusItem, RenderError, build_corpus
from segue.data.speech_text import FORTUNE_FILES, FORTUNES_DIR, Utterance, text_pools
from segue.errors import InputError

SAMPLE_RATE = 16000
#: Held-out voices that speak each evaluation sentence.
PARALLEL_VOICES = 3
#: Share of each engine's voices held out for valid, and as many again for test.
HELD_OUT_FRACTION = 0.10
#: Silence kept before the first and after the last sound when trimming.
TRIM_MARGIN_S = 0.15
ENGINE_TIMEOUT_S = 120.0


ESPEAK_ACCENTS = (
    "en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
    "en-us-nyc",
)  # "en" is British English: `-v en-gb+f3` would silently drop the variant, `en+f3` keeps it.
ESPEAK_VARIANTS = (
    "f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "klatt", "klatt2",
    "klatt3", "Annie", "Andy", "anika", "belinda", "david", "edward", "michel", "paul", "robert",
    "steph", "travis", "victor", "quincy", "shelby", "zac",
)
ESPEAK_VARIANTS_PER_ACCENT = 10
FESTIVAL_VOICE_PACKAGES = {
    "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k",
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
}
FESTIVAL_VOICE_DIRS = (Path("/usr/share/festival/voices"),)


# --------------------------------------------------------------------------------- speakers


@dataclass(frozen=True)
class Speaker:
    """One synthetic voice.

    `pitch`: espeak-ng `-p` (0-99), or the target mean F0 in Hz (flite, festival diphones),
    or None (voice default). `rate`: espeak-ng words per minute, or a duration stretch for
    flite/festival (> 1 is slower). `warp`: resampling factor applied to the waveform
    (pitch and formants x warp), compensated in the engine's pitch and rate.
    """

    id: str
    engine: str  # "espeak", "flite" or "festival"
    voice: str  # engine voice: "en-us+f3", "slt", "kal_diphone", ...
    pitch: float | None
    rate: float
    warp: float = 1.0


def _unit(*key: object) -> float:
    """A stable pseudo-random number in [0, 1) from a key (unlike `hash`, same in every run)."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _pick(options: Sequence, *key: object):
    return options[int(_unit(*key) * len(options))]


def _pct(x: float) -> str:
    return f"{round(x * 100):03d}"


def _catalogue() -> tuple[Speaker, ...]:
    speakers: list[Speaker] = []
    # espeak-ng: every accent gets 10 of the 30 variants (rotating), pitch/rate from a hash.
    for a, accent in enumerate(ESPEAK_ACCENTS):
        for k in range(ESPEAK_VARIANTS_PER_ACCENT):
            index = a * ESPEAK_VARIANTS_PER_ACCENT + k * 3 + a
            variant = ESPEAK_VARIANTS[index % len(ESPEAK_VARIANTS)]
            pitch = _pick(range(35, 66, 5), "espeak-pitch", accent, variant)
            rate = _pick(range(140, 181, 10), "espeak-rate", accent, variant)
            speakers.append(Speaker(f"espeak-{accent}-{variant.lower()}-p{pitch}-s{rate}",
                                    "espeak", f"{accent}+{variant}", float(pitch), float(rate)))
    stretches = (0.9, 0.95, 1.0, 1.05, 1.1)
    warps = (0.94, 1.0, 1.06)

    def add(engine: str, voice: str, short: str, pitches: Sequence[int | None],
            warp_options: Sequence[float]) -> None:
        for pitch in pitches:
            for warp in warp_options:
                stretch = _pick(stretches, engine, voice, pitch, warp)
                f0 = "" if pitch is None else f"-f{pitch}"
                speaker_id = f"{engine}-{short}{f0}-w{_pct(warp)}-d{_pct(stretch)}"
                speakers.append(Speaker(speaker_id, engine, voice,
                                        None if pitch is None else float(pitch), stretch, warp))

    add("flite", "slt", "slt", (150, 170, 190, 210), warps)  # natural mean F0 ~165 Hz
    add("flite", "awb", "awb", (95, 110, 125, 140), warps)
    add("flite", "kal16", "kal16", (85, 100, 115, 130), warps)
    add("flite", "rms", "rms", (None,), (0.9, 0.95, 1.0, 1.05, 1.1))  # rms ignores F0 targets
    add("festival", "kal_diphone", "kal", (95, 110, 125), (0.95, 1.05))
    add("festival", "ked_diphone", "ked", (90, 105, 120), (0.95, 1.05))
    add("festival", "cmu_us_slt_arctic_hts", "slthts", (None,), (0.9, 0.95, 1.0, 1.05, 1.1))
    ids = [s.id for s in speakers]
    assert len(set(ids)) == len(ids), "speaker ids must be unique"
    return tuple(speakers)


#: Every voice of the corpus, in catalogue order.
SPEAKERS: tuple[Speaker, ...] = _catalogue()
SPEAKERS_BY_ID: dict[str, Speaker] = {s.id: s for s in SPEAKERS}


@lru_cache(maxsize=1)
def speaker_splits() -> dict[str, str]:
    """Speaker id -> "train" / "valid" / "test" (fixed; independent of the seed).

    Per engine, the voices are ordered by a hash of their id; the first ~10 % (at least one)
    go to valid, the next ~10 % to test.
    """
    splits: dict[str, str] = {}
    for engine in sorted({s.engine for s in SPEAKERS}):
        ids = sorted((s.id for s in SPEAKERS if s.engine == engine),
                     key=lambda i: _unit("held-out", i))
        k = max(1, round(HELD_OUT_FRACTION * len(ids)))
        for n, speaker_id in enumerate(ids):
            splits[speaker_id] = "valid" if n < k else "test" if n < 2 * k else "train"
    return {s.id: splits[s.id] for s in SPEAKERS}


# ------------------------------------------------------------------------------- item stream


def _item(speaker: Speaker, split: str, utterance: Utterance, repeat: int,
          group_size: int = 1) -> CorpusItem:
    suffix = f"-e{repeat}" if repeat else ""
    meta = {"text": utterance.text, "sentence_id": utterance.sentence_id,
            "source": utterance.source, "ref": utterance.ref, "engine": speaker.engine,
            "voice": speaker.voice, "pitch": speaker.pitch, "rate": speaker.rate,
            "warp": speaker.warp}
    if split != "train" or group_size > 1:
        meta["parallel_voices"] = group_size
    return CorpusItem(uid=f"{speaker.id}_{utterance.sentence_id}{suffix}", group=speaker.id,
                      split=split, meta=meta)


def _groups(ids: list[str], size: int) -> list[list[str]]:
    groups = [ids[i:i + size] for i in range(0, len(ids), size)]
    if len(groups) > 1 and len(groups[-1]) < 2:
        groups[-2].extend(groups.pop())
    return groups


def speech_items(seed: int = 0, train_parallel: int = 1) -> Iterator[CorpusItem]:
    """The endless, deterministic item stream of the speech corpus (see the module docstring).

    Round r: every train voice speaks the next training sentence (voices in a shuffled order),
    and the held-out voices of each split, in shuffled groups of PARALLEL_VOICES, each speak
    the next evaluation sentence of that split; these groups are spread evenly over the round.
    `train_parallel` > 1 has the train voices speak in groups of that size as well (each group
    one sentence: parallel training data, for content-invariance training); 1 keeps the stream
    exactly as it was.
    """
    if train_parallel < 1:
        raise InputError(f"train_parallel must be >= 1, got {train_parallel}")
    pools = text_pools(seed)
    splits = speaker_splits()
    by_split = {s: [i for i in SPEAKERS_BY_ID if splits[i] == s] for s in pools}
    position = dict.fromkeys(pools, 0)

    def next_utterance(split: str) -> tuple[Utterance, int]:
        pool = pools[split]
        n = position[split]
        position[split] += 1
        return pool[n % len(pool)], n // len(pool)

    for round_ in itertools.count():
        rng = np.random.default_rng([seed, round_])
        train = [by_split["train"][i] for i in rng.permutation(len(by_split["train"]))]
        train_groups = (_groups(train, train_parallel) if train_parallel > 1
                        else [[speaker_id] for speaker_id in train])
        held = {s: _groups([by_split[s][i] for i in rng.permutation(len(by_split[s]))],
                           PARALLEL_VOICES) for s in ("valid", "test")}
        tagged = [("valid", g) for g in held["valid"]], [("test", g) for g in held["test"]]
        blocks = [b for pair in itertools.zip_longest(*tagged) for b in pair if b is not None]
        slots = {round((b + 0.5) * len(train_groups) / len(blocks)): b for b in range(len(blocks))}
        for index in range(len(train_groups) + 1):
            if index in slots:
                split, group = blocks[slots[index]]
                utterance, repeat = next_utterance(split)
                for speaker_id in group:
                    yield _item(SPEAKERS_BY_ID[speaker_id], split, utterance, repeat, len(group))
            if index < len(train_groups):
                utterance, repeat = next_utterance("train")
                for speaker_id in train_groups[index]:
                    yield _item(SPEAKERS_BY_ID[speaker_id], "train", utterance, repeat,
                                len(train_groups[index]))


# --------------------------------------------------------------------------------- rendering


def _run(command: list[str], what: str) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=ENGINE_TIMEOUT_S, check=False)
    except FileNotFoundError as error:
        raise RenderError(f"{what}: program {command[0]!r} not found ({error})") from None
    except subprocess.TimeoutExpired:
        raise RenderError(f"{what}: timed out after {ENGINE_TIMEOUT_S:.0f} s") from None
    errors = (result.stderr or "").strip()
    # text2wave exits 0 after a Scheme error, so its messages count as failures too.
    if result.returncode != 0 or "SIOD ERROR" in errors:
        raise RenderError(f"{what}: exit status {result.returncode}: {errors[-500:]}")


def _synthesise(speaker: Speaker, text: str, folder: Path) -> Path:
    """Run the speaker's engine on `text`; returns the wav it wrote."""
    text_file, wav = folder / "text.txt", folder / "out.wav"
    text_file.write_text(text + "\n")
    what = f"{speaker.engine} voice {speaker.voice} ({speaker.id})"
    if speaker.engine == "espeak":
        command = ["espeak-ng", "-v", speaker.voice, "-s", str(round(speaker.rate)),
                   "-p", str(round(speaker.pitch or 50)), "-f", str(text_file), "-w", str(wav)]
    elif speaker.engine == "flite":
        command = ["flite", "-voice", speaker.voice,
                   "--setf", f"duration_stretch={speaker.rate * speaker.warp:.4f}"]
        if speaker.pitch is not None:
            command += ["--setf", f"int_f0_target_mean={speaker.pitch / speaker.warp:.2f}"]
        command += ["-f", str(text_file), "-o", str(wav)]
    elif speaker.engine == "festival":
        stretch = speaker.rate * speaker.warp
        evals = [f"(voice_{speaker.voice})"]
        if speaker.voice.endswith("_hts"):  # HTS ignores Duration_Stretch; -r is a speed ratio
            evals.append("(set! hts_engine_params (append hts_engine_params "
                         f"(list '(\"-r\" {1.0 / stretch:.4f}))))")
        else:
            evals.append(f"(Parameter.set 'Duration_Stretch {stretch:.4f})")
        if speaker.pitch is not None:
            evals.append("(set! int_lr_params (cons '(target_f0_mean "
                         f"{speaker.pitch / speaker.warp:.2f}) int_lr_params))")
        command = ["text2wave", *itertools.chain.from_iterable(("-eval", e) for e in evals),
                   "-o", str(wav), str(text_file)]
    else:
        raise RenderError(f"unknown engine {speaker.engine!r} for speaker {speaker.id}")
    _run(command, what)
    if not wav.is_file() or wav.stat().st_size <= 44:
        raise RenderError(f"{what}: the engine wrote no audio")
    return wav


def trim_silence(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, *,
                 threshold_db: float = -40.0, margin_s: float = TRIM_MARGIN_S) -> np.ndarray:
    """Cut leading/trailing silence (10 ms frames quieter than `threshold_db` below the loudest
    frame) and leave exactly `margin_s` before and after the sound (zero-padded if the engine
    left less). Digital silence is returned unchanged."""
    frame = max(1, sample_rate // 100)
    n = audio.size // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(np.square(audio[: n * frame].reshape(n, frame), dtype=np.float64), 1))
    if rms.max() <= 1e-7:
        return audio
    active = np.flatnonzero(rms >= rms.max() * 10.0 ** (threshold_db / 20.0))
    margin = int(margin_s * sample_rate)
    first, last = int(active[0]) * frame, min(audio.size, (int(active[-1]) + 1) * frame)
    start, end = max(0, first - margin), min(audio.size, last + margin)
    return np.concatenate([np.zeros(margin - (first - start), audio.dtype), audio[start:end],
                           np.zeros(margin - (end - last), audio.dtype)])


def render_speech(item: CorpusItem) -> np.ndarray:
    """Speak `item.meta["text"]` with the voice `item.group`: float32 [T] at 16 kHz, trimmed
    to 0.15 s of silence each side, peak-normalised. Raises RenderError if the engine fails."""
    speaker = SPEAKERS_BY_ID.get(item.group)
    if speaker is None:
        raise RenderError(f"{item.uid}: unknown speaker {item.group!r}")
    text = str(item.meta.get("text", "")).strip()
    if not text:
        raise RenderError(f"{item.uid}: no text to speak")
    with tempfile.TemporaryDirectory(prefix="segue-tts-") as folder:
        wav = _synthesise(speaker, text, Path(folder))
        try:
            if speaker.warp == 1.0:
                audio = audio_io.load(wav, SAMPLE_RATE)
            else:  # play the wav `warp` times faster: pitch and formants x warp
                native = audio_io.info(wav).sample_rate
                audio = audio_io.resample(audio_io.load(wav), round(native * speaker.warp),
                                          SAMPLE_RATE)
        except audio_io.AudioError as error:
            raise RenderError(f"{item.uid}: unreadable engine output ({error})") from None
    if audio_io.is_silent(audio):
        raise RenderError(f"{item.uid}: {speaker.engine} produced silence")
    audio = trim_silence(audio, SAMPLE_RATE)
    if audio.size < SAMPLE_RATE // 2:
        raise RenderError(f"{item.uid}: only {audio.size / SAMPLE_RATE:.2f} s of speech")
    return audio_io.normalize_audio(audio, "peak")


# ----------------------------------------------------------------------------------- corpus


def _festival_voice_installed(name: str) -> bool:
    return any(any(root.glob(f"*/{name}")) for root in FESTIVAL_VOICE_DIRS if root.is_dir())


def check_engines(texts: bool = True) -> None:
    """Raise RuntimeError naming every missing TTS program, festival voice or (with `texts`)
    text package."""
    missing: dict[str, str] = {}  # what -> Debian package
    programs = [("espeak-ng", "espeak-ng"), ("flite", "flite"), ("text2wave", "festival")]
    for program, package in programs + ([("bible", "bible-kjv")] if texts else []):
        if shutil.which(program) is None:
            missing[f"program {program!r}"] = package
    for voice, package in FESTIVAL_VOICE_PACKAGES.items():
        if not _festival_voice_installed(voice):
            missing[f"festival voice {voice}"] = package
    absent = [name for name in FORTUNE_FILES if not (FORTUNES_DIR / name).is_file()]
    if absent and texts:
        missing[f"fortune files {', '.join(absent)} in {FORTUNES_DIR}"] = "fortunes"
    if missing:
        packages = " ".join(dict.fromkeys(missing.values()))
        needs = "; ".join(f"{what} (package {package})" for what, package in missing.items())
        raise RuntimeError(f"the speech corpus needs: {needs}. Install with: "
                           f"sudo apt-get install -y --no-install-recommends {packages}")


def make_speech_corpus(out_dir: str | os.PathLike, hours: float = 1.0, seed: int = 0,
                       workers: int | None = None, train_parallel: int = 1) -> BuildSummary:
    """Synthesise `hours` of multi-speaker speech into `out_dir` (resumable; see module doc).
    A folder holds one stream: resume it with the same `seed` and `train_parallel`."""
    check_engines()
    items = speech_items(seed, train_parallel)
    return build_corpus(out_dir, items, render_speech, hours=hours,
                        sample_rate=SAMPLE_RATE, workers=workers, desc="speech")
