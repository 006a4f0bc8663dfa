"""SoundStorm (Borsos et al., 2023): parallel acoustic decoding from semantic tokens.

A bidirectional transformer over acoustic frames predicts masked codes of one level at a time,
conditioned on semantic tokens and an acoustic prompt; decoding is MaskGIT-style, coarse level
to fine. It sees only token ids (no codec, no semantic model).

    model = SoundStorm(soundstorm_preset("tiny", n_levels=4, codebook_size=1024,
                                         semantic_vocab=500))
    codes = generate(model, semantic [B, Ts], prompt_codes [B, Q, Tp])  # [B, Q, 2 Ts]
    model = load_soundstorm("runs/soundstorm")  # a run folder or an exported folder
"""

from segue.soundstorm.config import PRESETS, SoundStormConfig, soundstorm_preset
from segue.soundstorm.decode import generate, generate_windowed
from segue.soundstorm.load import load_soundstorm
from segue.soundstorm.masking import Masked, mask_codes, mask_codes_seeded, mask_ratio
from segue.soundstorm.model import SoundStorm

__all__ = [
    "PRESETS",
    "Masked",
    "SoundStorm",
    "SoundStormConfig",
    "generate",
    "generate_windowed",
    "load_soundstorm",
    "mask_codes",
    "mask_codes_seeded",
    "mask_ratio",
    "soundstorm_preset",
]
