"""The acoustic paths: semantic tokens (+ the codes of a prompt) -> every codec level.

    path = acoustic_path("soundstorm")                 # or AR, SOUNDSTORM
    codes = path.generate(model, semantic, prompt_codes, sampling, generator, stage)
    codes = path.generate(..., given=true_codes[:, :G])  # only the levels >= G generated

`Autoregressive` is AudioLM's: the coarse LM, then the fine LM, each sliding its own windows
(`segue.lm.stages`). `Parallel` is SoundStorm's: every level at once, in windows of its own
(`segue.soundstorm.generate_windowed`). `AudioLM` takes either object (or its name, converted
once by `acoustic_path`) and never tests a string itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch

from segue.errors import InputError
from segue.lm.stages import coarse_generate, fine_generate
from segue.soundstorm import generate_windowed

if TYPE_CHECKING:
    from segue.pipeline import AudioLM
    from segue.sampling import PipelineSampling


class AcousticPath(ABC):
    """One way from semantic tokens to acoustic codes."""

    name: ClassVar[str]  # what users pass: `acoustic="ar"`, `--acoustic ar`
    label: ClassVar[str]  # what reports call it
    stages: ClassVar[tuple[str, ...]]  # the progress stages it reports, in order

    @abstractmethod
    def check(self, model: AudioLM) -> None:
        """Raise ValueError when `model` lacks a part this path needs."""

    def check_given(self, model: AudioLM, levels: int) -> None:
        """Raise InputError unless this path can keep the first `levels` levels as given."""
        if not 0 < levels < model.n_levels:
            raise InputError(f"given levels must be in [1, {model.n_levels - 1}], got {levels}")

    @abstractmethod
    def generate(
        self,
        model: AudioLM,
        semantic: torch.Tensor,
        codes: torch.Tensor | None,
        sampling: PipelineSampling,
        generator: torch.Generator | None,
        stage: Callable[[str], None],
        given: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Semantic tokens [B, Ts] (+ known codes [B, Q, r * Tp] of the first Tp tokens) ->
        codes [B, Q, r * Ts]; `stage(name)` as each of `stages` starts. given [B, G, r * Ts]:
        the first G levels of every frame, kept (`check_given` says which G this path takes)."""

    def __repr__(self) -> str:
        return f"<acoustic path {self.name!r}>"


class Autoregressive(AcousticPath):
    """The coarse LM (semantic -> the first Q' levels), then the fine LM (-> the rest)."""

    name = "ar"
    label = "coarse + fine LMs"
    stages = ("coarse", "fine")

    def check(self, model: AudioLM) -> None:
        """Nothing to check: every bundle has a coarse and a fine LM."""

    def check_given(self, model: AudioLM, levels: int) -> None:
        """The coarse LM samples its levels together: only all of them can be given (the fine
        LM alone then)."""
        if levels != model.n_coarse:
            raise InputError(
                f"the coarse + fine LMs keep exactly the {model.n_coarse} coarse levels as "
                f"given, not {levels} (SoundStorm keeps any number)"
            )

    def generate(
        self, model, semantic, codes, sampling, generator, stage, given=None
    ) -> torch.Tensor:
        q = model.n_coarse
        prompt_coarse = prompt_fine = None
        if codes is not None:
            prompt_coarse, prompt_fine = codes[:, :q], codes[:, q:]
        stage("coarse")
        if given is not None:  # the coarse levels as given
            self.check_given(model, given.shape[1])
            coarse = given
        else:
            coarse = coarse_generate(
                model.coarse_lm, semantic, prompt_coarse, generator=generator,
                **sampling.coarse.kwargs(),
            )  # fmt: skip
        stage("fine")
        return fine_generate(
            model.fine_lm, coarse, prompt_fine, generator=generator, **sampling.fine.kwargs()
        )


class Parallel(AcousticPath):
    """SoundStorm: every level at once by confidence-based parallel decoding, with its own
    sampling schedule (the pipeline's coarse/fine settings do not apply)."""

    name = "soundstorm"
    label = "SoundStorm"
    stages = ("soundstorm",)

    def check(self, model: AudioLM) -> None:
        if model.soundstorm is None:
            raise InputError(
                'acoustic="soundstorm" needs a SoundStorm part, and this bundle has none (add '
                'one with `segue bundle ... --soundstorm RUN`, or use acoustic="ar")'
            )

    def generate(
        self, model, semantic, codes, sampling, generator, stage, given=None
    ) -> torch.Tensor:
        stage("soundstorm")
        if given is not None:
            self.check_given(model, given.shape[1])
        return generate_windowed(
            model.soundstorm, semantic, codes, generator=generator, given=given
        )


AR, SOUNDSTORM = Autoregressive(), Parallel()
#: Every path by name.
PATHS: dict[str, AcousticPath] = {path.name: path for path in (AR, SOUNDSTORM)}


def acoustic_path(value: str | AcousticPath) -> AcousticPath:
    """A path object from itself or its name (as a user or the command line gives it)."""
    if isinstance(value, AcousticPath):
        return value
    try:
        return PATHS[value]
    except (KeyError, TypeError):
        raise InputError(f"acoustic must be one of {tuple(PATHS)}, got {value!r}") from None
