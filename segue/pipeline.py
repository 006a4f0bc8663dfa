"""AudioLM end to end: audio -> semantic tokens -> semantic LM -> coarse LM -> fine LM -> audio.

    model = AudioLM.from_pretrained("segue/assets/speech-tiny")
    audio = model.continue_(prompt, seconds=10.0, seed=0)    # [B, T] -> [B, T + 10 s]
    audio = model.generate(seconds=5.0, batch_size=4)        # [4, 5 s], from nothing
    audio = model.resynthesize(audio, acoustic_prompt=voice)  # [B, T], said in voice's voice
    audio = model.continue_(prompt, 10.0, acoustic="soundstorm")  # needs a soundstorm/ part

Audio is float32 at the codec's `sample_rate` (16 kHz). Acoustic codes come at the codec's
frame rate (50 Hz), semantic tokens at the tokenizer's (25 Hz): one semantic token spans `ratio`
acoustic frames, `semantic_hop` samples. The stage functions of `segue.lm.stages` do the windows
(the semantic context slides, the coarse and fine stages run window by window), so outputs may be
longer than any stage's context.

The acoustic stage is a `segue.acoustic.AcousticPath` (or its name): `AR`, "ar" (the coarse
then the fine LM, AudioLM's) or `SOUNDSTORM`, "soundstorm" (one SoundStorm decode of every level
from all the semantic tokens, the prompt's codes as its acoustic prompt, in windows of its own
for outputs past its context).

A bundle is a folder holding each part in the format its own loader reads, and `bundle.json`
(the format, and the checks that parts fit together: `segue.bundle`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from segue.acoustic import AR, PATHS, AcousticPath, acoustic_path
from segue.audio import PEAK_TARGET
from segue.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_NAME,
    BUNDLE_VERSION,
    PARTS,
    check_bundle_meta,
    check_compatible,
    read_bundle_meta,
    store_half,
)
from segue.codec.load import load_codec
from segue.config import from_dict, to_dict, write_atomic
from segue.errors import InputError
from segue.lm.layout import prompt_frames as _prompt_frames
from segue.lm.stages import StageLM, load_lm, semantic_continue
from segue.sampling import PipelineSampling as PipelineSampling  # importable from here too
from segue.sampling import SamplingConfig as SamplingConfig
from segue.semantic.tokenizer import SemanticTokenizer, load_tokenizer
from segue.soundstorm import SoundStorm, load_soundstorm

#: The progress stages of each task before its acoustic path's (`stage_names`).
TASK_STAGES = {"continue": ("tokenize", "semantic"), "generate": ("semantic",),
               "resynth": ("tokenize",)}  # fmt: skip
#: The names of the acoustic paths (`segue.acoustic`).
ACOUSTIC = tuple(PATHS)
#: Inputs whose peak is below this are refused as silent.
SILENCE_PEAK = 1e-4
#: The longest audio one call generates: time and memory grow with it (every stage's tokens and
#: the decoded audio are held at once), and 10 minutes already takes tens of minutes on a CPU.
MAX_SECONDS = 600.0
#: Crossfade (seconds) from the original prompt into the continuation.
CROSSFADE_SECONDS = 0.005
#: `progress` of the generation methods: a bar over the stages (True) or none (False), or a
#: function called with each stage's name as it starts (it may raise to stop the call).
Progress = bool | Callable[[str], None]


class AudioLM:
    """The codec, the semantic tokenizer and the three stage LMs (+ optionally SoundStorm, a
    parallel acoustic stage), sampled as one model."""

    def __init__(
        self,
        codec,
        tokenizer: SemanticTokenizer,
        semantic_lm: StageLM,
        coarse_lm: StageLM,
        fine_lm: StageLM,
        sampling: PipelineSampling | None = None,
        info: dict[str, Any] | None = None,
        soundstorm: SoundStorm | None = None,
    ):
        check_compatible(codec, tokenizer, semantic_lm, coarse_lm, fine_lm, soundstorm)
        self.codec = codec.eval()
        self.tokenizer = tokenizer.eval()
        self.semantic_lm, self.coarse_lm, self.fine_lm = semantic_lm, coarse_lm, fine_lm
        self.sampling = sampling or PipelineSampling.from_stages(semantic_lm, coarse_lm, fine_lm)
        self.info = dict(info or {})
        self.soundstorm = None if soundstorm is None else soundstorm.eval()

    # ---- rates and limits
    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    @property
    def frame_rate(self) -> float:
        """Acoustic frames per second."""
        return float(self.codec.frame_rate)

    @property
    def semantic_rate(self) -> float:
        """Semantic tokens per second."""
        return float(self.tokenizer.frame_rate)

    @property
    def ratio(self) -> int:
        """Acoustic frames per semantic token."""
        return self.coarse_lm.layout.ratio

    @property
    def semantic_hop(self) -> int:
        """Samples per semantic token."""
        return round(self.sample_rate / self.semantic_rate)

    @property
    def n_coarse(self) -> int:
        return self.coarse_lm.stage.n_coarse

    @property
    def n_levels(self) -> int:
        """Acoustic levels generated and decoded (the fine LM's)."""
        return self.fine_lm.stage.n_levels

    @property
    def max_prompt_seconds(self) -> float:
        """The longest prompt `continue_` takes: the semantic context less one token."""
        return (self.semantic_lm.layout.window - 1) / self.semantic_rate

    @property
    def device(self) -> torch.device:
        return self.fine_lm.model.head.weight.device

    def to(self, device: torch.device | str) -> AudioLM:
        self.codec.to(device)
        self.tokenizer.to(device)
        for lm in (self.semantic_lm, self.coarse_lm, self.fine_lm):
            lm.to(device)
        if self.soundstorm is not None:
            self.soundstorm.to(device)
        return self

    # ---- bundles
    @classmethod
    def from_parts(
        cls,
        codec: str | os.PathLike,
        semantic: str | os.PathLike,
        semantic_lm: str | os.PathLike,
        coarse_lm: str | os.PathLike,
        fine_lm: str | os.PathLike,
        *,
        soundstorm: str | os.PathLike | None = None,
        info: dict[str, Any] | None = None,
        device: torch.device | str = "cpu",
    ) -> AudioLM:
        """Assemble from each part's own location (exported folder or training run folder)."""
        lms = [load_lm(path, device=device) for path in (semantic_lm, coarse_lm, fine_lm)]
        parts = load_codec(codec), load_tokenizer(semantic), *lms
        storm = None if soundstorm is None else load_soundstorm(soundstorm, device=device)
        return cls(*parts, info=info, soundstorm=storm).to(device)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, *, device: torch.device | str = "cpu"
    ) -> AudioLM:
        """Load a bundle folder written by `save_pretrained` (see the module docstring)."""
        path = Path(directory)
        meta = read_bundle_meta(path)
        lms = [load_lm(path / name, device=device) for name in PARTS if name.endswith("_lm")]
        codec = load_codec(path / "codec")
        try:
            tokenizer = load_tokenizer(path / "semantic")
        except ImportError as error:  # a backbone this machine lacks: say which, and what to do
            backbone = meta.get("semantic_backbone", "?")
            raise ImportError(
                f"{path}: the bundle's semantic tokenizer ({backbone}) cannot load: {error}"
            ) from error
        sampling = from_dict(PipelineSampling, meta.get("sampling", {}), where="sampling")
        storm = None
        if (path / "soundstorm").is_dir():
            storm = load_soundstorm(path / "soundstorm", device=device)
        model = cls(
            codec, tokenizer, *lms, sampling=sampling, info=meta.get("info"), soundstorm=storm
        )
        check_bundle_meta(
            path / BUNDLE_NAME,
            meta,
            {
                "sample_rate": model.sample_rate,
                "acoustic_rate": model.frame_rate,
                "semantic_rate": model.semantic_rate,
                "n_coarse": model.n_coarse,
                "n_levels": model.n_levels,
                "soundstorm": model.soundstorm is not None,
            },
        )
        return model.to(device)

    def save_pretrained(self, directory: str | os.PathLike, *, half: bool = False) -> Path:
        """Write the bundle folder; bundle.json last, so a bundle with one is complete.

        half=True stores the float weights as float16 (half the size, e.g. for a bundle kept in
        git); they load back into float32 models. k-means centroids stay float32: token ids
        must not move.
        """
        path = Path(directory)
        if not hasattr(self.codec, "save_pretrained"):
            raise InputError(
                f"a bundle holds a segue Codec, not a {type(self.codec).__name__} (a Hugging "
                "Face codec cannot be saved in one)"
            )
        path.mkdir(parents=True, exist_ok=True)
        self.codec.save_pretrained(path / "codec")
        self.tokenizer.save(path / "semantic")
        self.semantic_lm.save_pretrained(path / "semantic_lm")
        self.coarse_lm.save_pretrained(path / "coarse_lm")
        self.fine_lm.save_pretrained(path / "fine_lm")
        if self.soundstorm is not None:
            self.soundstorm.save_pretrained(path / "soundstorm")
        elif (path / "soundstorm").is_dir():  # an older bundle's, not this model's
            import shutil

            shutil.rmtree(path / "soundstorm")
        if half:
            store_half(path)
        meta = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "sample_rate": self.sample_rate,
            "acoustic_rate": self.frame_rate,
            "semantic_rate": self.semantic_rate,
            "n_coarse": self.n_coarse,
            "n_levels": self.n_levels,
            "soundstorm": self.soundstorm is not None,
            "semantic_backbone": self.tokenizer.kind,  # what semantic/ needs installed to load
            "sampling": to_dict(self.sampling),
            "info": self.info,
        }
        write_atomic(path / BUNDLE_NAME, (json.dumps(meta, indent=1) + "\n").encode())
        return path

    # ---- generation
    @torch.inference_mode()
    def continue_(
        self,
        prompt: torch.Tensor | np.ndarray,
        seconds: float,
        *,
        seed: int | None = None,
        sampling: PipelineSampling | None = None,
        progress: Progress = True,
        acoustic: str | AcousticPath = AR,
    ) -> torch.Tensor:
        """Continue prompt [B, T] or [T] (at `sample_rate`) by `seconds`: [B, T + N] audio,
        N = round(seconds * sample_rate).

        As in AudioLM's examples, the output is the original prompt followed by the continuation.
        The models read the prompt in whole semantic frames (`semantic_hop` samples): its last
        T % semantic_hop samples (under one frame, 40 ms at 25 Hz) are regenerated as the start
        of the continuation, and the last 5 ms before that point crossfade from the original
        into the decoded audio. The prompt must be under `max_prompt_seconds`.

        acoustic: `segue.acoustic.AR` or "ar" (coarse + fine LMs), or `SOUNDSTORM` or
        "soundstorm" (the bundle's SoundStorm part; the prompt's codes are its acoustic prompt).
        `sampling` then sets the semantic stage only.
        """
        path = self._path(acoustic)
        x = self._audio(prompt, "prompt")
        new = self._samples(seconds)
        hop, length = self.semantic_hop, x.shape[1]
        known = length // hop  # semantic tokens of the prompt
        if known == 0:
            raise InputError(
                f"prompt of {length} samples is shorter than one semantic frame ({hop} samples)"
            )
        window = self.semantic_lm.layout.window
        if known >= window:
            raise InputError(
                f"prompt of {length / self.sample_rate:.2f} s fills the semantic LM's context "
                f"({window / self.semantic_rate:g} s): give a prompt under "
                f"{self.max_prompt_seconds:.2f} s"
            )
        cut = known * hop
        n = math.ceil((length + new - cut) / hop)  # semantic tokens to generate
        self._check_semantic_context(known + n)
        sampling = sampling or self.sampling
        generator = self._generator(seed)
        fade = min(cut, round(CROSSFADE_SECONDS * self.sample_rate))
        fade_from = cut - fade  # the prompt's audio before this is kept as given, not decoded
        names = stage_names("continue", path)
        with _Stages(names, progress) as stage:
            stage("tokenize")
            semantic, codes = self._tokens(x[:, :cut])
            stage("semantic")
            out = semantic_continue(
                self.semantic_lm,
                semantic,
                n,
                eos=False,
                generator=generator,
                **sampling.semantic.kwargs(),
            )
            semantic = torch.cat([semantic, out.tokens], dim=1)
            decoded = self._acoustic(path, semantic, codes, sampling, generator, stage, fade_from)
        audio = torch.cat([x[:, :cut], decoded[:, cut : length + new]], dim=1)
        if fade:
            ramp = torch.linspace(0, 1, fade + 2, device=audio.device)[1:-1]
            span = slice(cut - fade, cut)
            audio[:, span] = x[:, span] * (1 - ramp) + decoded[:, span] * ramp
        return audio

    @torch.inference_mode()
    def generate(
        self,
        seconds: float,
        batch_size: int = 1,
        *,
        seed: int | None = None,
        sampling: PipelineSampling | None = None,
        progress: Progress = True,
        acoustic: str | AcousticPath = AR,
    ) -> torch.Tensor:
        """Unconditional audio: [batch_size, round(seconds * sample_rate)]; acoustic: the
        path or its name (see `continue_`)."""
        path = self._path(acoustic)
        new = self._samples(seconds)
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        n = math.ceil(new / self.semantic_hop)
        self._check_semantic_context(n)
        sampling = sampling or self.sampling
        generator = self._generator(seed)
        names = stage_names("generate", path)
        with _Stages(names, progress) as stage:
            stage("semantic")
            out = semantic_continue(
                self.semantic_lm,
                None,
                n,
                batch_size=batch_size,
                eos=False,
                generator=generator,
                **sampling.semantic.kwargs(),
            )
            audio = self._acoustic(path, out.tokens, None, sampling, generator, stage)
        return audio[:, :new]

    @torch.inference_mode()
    def resynthesize(
        self,
        audio: torch.Tensor | np.ndarray,
        acoustic_prompt: torch.Tensor | np.ndarray | None = None,
        *,
        seed: int | None = None,
        sampling: PipelineSampling | None = None,
        progress: Progress = True,
        acoustic: str | AcousticPath = AR,
        keep_levels: int = 0,
    ) -> torch.Tensor:
        """New acoustics for the semantic content of audio [B, T] or [T]: [B, T].

        The coarse and fine LMs sample acoustic tokens for the audio's own semantic tokens (what
        is said stays, how it sounds is sampled). With acoustic_prompt [B or 1, Tp] or [Tp]
        (another speaker), its semantic and acoustic tokens come first, so the output takes its
        voice; only the resynthesized part is returned. The coarse LM sees at most its
        `prompt_seconds` of that prompt (2 s for `tiny`, 5 s for `audiolm`), and later windows
        keep the voice only through the audio generated so far. With acoustic="soundstorm",
        SoundStorm decodes every level at once with the voice's codes as its acoustic prompt
        (at most half its `max_frames` of them when the output needs several windows).
        keep_levels G > 0 keeps the audio's own codes of levels < G and generates only the
        finer ones (SoundStorm: any G; the LMs: G = n_coarse, the fine LM alone), which tells
        how many words each level's generation loses (`segue eval e2e --resynth-keep-levels`).
        """
        path = self._path(acoustic)
        if keep_levels:
            path.check_given(self, keep_levels)
        x = self._audio(audio, "audio")
        hop, (batch, length) = self.semantic_hop, x.shape
        if length < hop:
            raise InputError(
                f"audio of {length} samples is shorter than one semantic frame ({hop} samples)"
            )
        _check_cap(
            length / self.sample_rate, "resynthesize", "cut longer files and resynthesize the parts"
        )  # before any compute
        p = None if acoustic_prompt is None else self._audio(acoustic_prompt, "acoustic prompt")
        if p is not None:
            if p.shape[0] not in (1, batch):
                raise InputError(
                    f"acoustic prompt batch {p.shape[0]} does not match the audio's {batch}"
                )
            if p.shape[1] < hop:
                raise InputError(
                    f"acoustic prompt of {p.shape[1]} samples is shorter than one semantic "
                    f"frame ({hop} samples)"
                )
            p = p[:, : p.shape[1] // hop * hop].expand(batch, -1)
        sampling = sampling or self.sampling
        generator = self._generator(seed)
        names = stage_names("resynth", path)
        with _Stages(names, progress) as stage:
            stage("tokenize")
            padded = torch.nn.functional.pad(x, (0, -length % hop))
            given = None
            if keep_levels:
                semantic, own = self._tokens(padded)
                given = own[:, :keep_levels]
            else:
                semantic = self._semantic(padded)
            codes, start = None, 0
            if p is not None:  # the voice's tokens first: its codes are the acoustic prompt
                prompt_semantic, codes = self._tokens(p)
                semantic, start = torch.cat([prompt_semantic, semantic], dim=1), p.shape[1]
                if given is not None:
                    given = torch.cat([codes[:, :keep_levels], given], dim=2)
            out = self._acoustic(path, semantic, codes, sampling, generator, stage, start, given)
        return out[:, start : start + length]

    # ---- helpers
    def _path(self, acoustic: str | AcousticPath) -> AcousticPath:
        """The acoustic path object, checked against this bundle's parts."""
        path = acoustic_path(acoustic)
        path.check(self)
        return path

    def _acoustic(
        self,
        path: AcousticPath,
        semantic,
        codes,
        sampling,
        generator,
        stage,
        skip: int = 0,
        given: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Semantic tokens [B, Ts] (+ known codes [B, Q, r * Tp] of the first Tp tokens; + the
        first G levels of every frame, `given` [B, G, r * Ts]) -> audio [B, Ts * semantic_hop]
        through the acoustic path and the codec. The codec decodes from sample `skip` on
        (rounded down to a frame; a continuation's prompt is not decoded again): the samples
        before are left at zero."""
        kept = {} if given is None else {"given": given}  # paths written before `given` work
        codes = path.generate(self, semantic, codes, sampling, generator, stage, **kept)
        stage("decode")
        first = skip // self.codec.hop_length
        audio = self.codec.decode(codes.to(self.device), start=first)
        return torch.nn.functional.pad(audio, (first * self.codec.hop_length, 0))

    def _semantic(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio [B, T] (T a multiple of `semantic_hop`) -> semantic tokens [B, T / hop]."""
        n = audio.shape[1] // self.semantic_hop
        rate = self.tokenizer.sample_rate
        if rate != self.sample_rate:
            from segue.audio import resample

            array = resample(audio.cpu().numpy().T, self.sample_rate, rate)
            audio = torch.from_numpy(np.ascontiguousarray(array.T)).to(audio.device)
        tokens = self.tokenizer.tokenize(audio.to(self.tokenizer.device))[:, :n]
        if tokens.shape[1] < n:
            raise InputError(f"the tokenizer gave {tokens.shape[1]} tokens for {n} frames")
        return tokens.to(self.device)

    def _tokens(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio [B, T] (T a multiple of `semantic_hop`) -> (semantic [B, Ts], acoustic codes
        [B, n_levels, ratio * Ts])."""
        semantic = self._semantic(audio)
        frames = self.ratio * semantic.shape[1]
        codes = self.codec.encode(audio)[:, : self.n_levels, :frames]
        return semantic, codes.to(self.device)

    def _audio(self, audio: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
        """[T] or [B, T] -> float32 [B, T] on the device, refused if empty, non-finite, silent."""
        x = torch.as_tensor(audio, dtype=torch.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise InputError(f"{name} must be audio [T] or [B, T], got {tuple(x.shape)}")
        if x.numel() == 0:
            raise InputError(f"{name} is empty ({tuple(x.shape)})")
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise InputError(f"{name} contains {bad} NaN or infinite sample(s)")
        peak = x.abs().amax(dim=1)
        if bool((peak < SILENCE_PEAK).any()):
            i = int(peak.argmin())
            raise InputError(
                f"{name} is silent (sequence {i}: peak {float(peak[i]):.1e} < {SILENCE_PEAK:g})"
            )
        loud = peak > 1.0
        if bool(loud.any()):  # float audio past full scale: the codec would clip it hard
            warnings.warn(
                f"{name} peaks at {float(peak.max()):.3g}, outside [-1, 1]: scaled to a peak of "
                f"{PEAK_TARGET}",
                stacklevel=3,
            )
            x = torch.where(loud[:, None], x * (PEAK_TARGET / peak[:, None]), x)
        return x.to(self.device)

    def _samples(self, seconds: float) -> int:
        if not (math.isfinite(seconds) and seconds > 0):
            raise InputError(f"seconds must be > 0, got {seconds}")
        _check_cap(
            seconds,
            "seconds must be",
            "for longer audio, continue the output of one call with the next",
        )
        return max(1, round(seconds * self.sample_rate))

    def _check_semantic_context(self, total: int) -> None:
        """A semantic sequence of `total` tokens longer than the context needs a sliding one."""
        layout = self.semantic_lm.layout
        if total > layout.window and _prompt_frames(self.semantic_lm.stage) < 1:
            raise InputError(
                f"{total / self.semantic_rate:g} s do not fit the semantic LM's context "
                f"({layout.window / self.semantic_rate:g} s), and it cannot slide "
                "(its prompt_seconds is 0)"
            )

    def _generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        return torch.Generator(device=self.device).manual_seed(int(seed))


def stage_names(task: str, acoustic: str | AcousticPath) -> list[str]:
    """The progress stages of a task ("continue", "generate", "resynth") on an acoustic path,
    in the order `AudioLM` reports them to `progress`."""
    return [*TASK_STAGES[task], *acoustic_path(acoustic).stages, "decode"]


def _check_cap(seconds: float, what: str, advice: str) -> None:
    """Refuse more than MAX_SECONDS of audio in one call: time and memory grow with it."""
    if seconds > MAX_SECONDS:
        raise InputError(
            f"{what} at most {MAX_SECONDS:g} s ({MAX_SECONDS / 60:g} minutes) in one call, got "
            f"{seconds:g} s: time and memory grow with the length; {advice}"
        )


class _Stages:
    """A progress bar over named stages: `with _Stages(names, on) as stage: stage("coarse")`;
    `on` may instead be a function, called with each name."""

    def __init__(self, names: list[str], enabled: Progress):
        self.hook = enabled if callable(enabled) else None
        quiet = not enabled or self.hook is not None
        self.bar = tqdm(total=len(names), desc="audiolm", unit="stage", disable=quiet)
        self.started = False

    def __call__(self, name: str) -> None:
        if self.hook is not None:
            self.hook(name)
        if self.started:
            self.bar.update()
        self.started = True
        self.bar.set_postfix_str(name)

    def __enter__(self) -> _Stages:
        return self

    def __exit__(self, *exc) -> None:
        if self.started and exc[0] is None:
            self.bar.update()
        self.bar.close()
