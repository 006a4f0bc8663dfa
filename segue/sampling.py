"""How each stage of the pipeline samples: `SamplingConfig` (one stage) and `PipelineSampling`
(the semantic, coarse and fine stages). A bundle stores them (bundle.json's "sampling"), the
command line overrides them (`--temperature-coarse` ...), `AudioLM` passes them to the stage
functions of `segue.lm.stages`; `segue.pipeline` exports both names too."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segue.config import unset_old_placeholders
from segue.errors import InputError
from segue.lm.stages import StageLM


@dataclass
class SamplingConfig:
    """How one stage samples: temperature (0: greedy), top_k (None: off), top_p (None: off).

    Placeholders: None is "not set" (docs/training.md); top_k 0 and top_p 1.0 (how older
    bundles and `--top-k 0` say "off") read as None.
    """

    temperature: float = 0.6
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        unset_old_placeholders(self, 0, "top_k")
        unset_old_placeholders(self, 1.0, "top_p")
        if not self.temperature >= 0:
            raise InputError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise InputError(f"top_k must be >= 1 (None: off), got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p < 1:
            raise InputError(f"top_p must be in (0, 1] (None: off), got {self.top_p}")

    def kwargs(self) -> dict[str, Any]:
        """Explicit settings for the stage functions, which read None as "the stage's own
        setting" and take top_k=0 / top_p=1.0 as "off" (the same draws as before)."""
        return {
            "temperature": self.temperature,
            "top_k": self.top_k or 0,
            "top_p": 1.0 if self.top_p is None else self.top_p,
        }


@dataclass
class PipelineSampling:
    """Sampling of the three stages; AudioLM's temperatures by default (0.6 / 0.8 / 0.6)."""

    semantic: SamplingConfig = field(default_factory=lambda: SamplingConfig(0.6))
    coarse: SamplingConfig = field(default_factory=lambda: SamplingConfig(0.8))
    fine: SamplingConfig = field(default_factory=lambda: SamplingConfig(0.6))

    @classmethod
    def from_stages(cls, semantic: StageLM, coarse: StageLM, fine: StageLM) -> PipelineSampling:
        """The settings each LM was configured with (its StageConfig)."""

        def of(lm: StageLM) -> SamplingConfig:
            return SamplingConfig(lm.stage.temperature, lm.stage.top_k, lm.stage.top_p)

        return cls(of(semantic), of(coarse), of(fine))
