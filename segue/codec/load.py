"""Open an acoustic tokenizer from wherever it lives: an exported folder, a training run, or a
Hugging Face model (`hf:facebook/encodec_24khz`, `hf:/local/dac_folder`)."""

from __future__ import annotations

from pathlib import Path

from segue.codec.model import Codec
from segue.pretrained import CONFIG_NAME, WEIGHTS_NAME, saved_model_folder


def load_codec(location: str | Path):
    """A `Codec` (or `PretrainedCodec` for `hf:` locations), in eval mode."""
    text = str(location)
    if text.startswith("hf:"):
        from segue.codec.hf import PretrainedCodec

        return PretrainedCodec.from_pretrained(text[3:])
    path, exported = saved_model_folder(location, (WEIGHTS_NAME, CONFIG_NAME), "codec")
    if exported:
        return Codec.from_pretrained(path)
    from segue.codec.train import load_codec_from_run

    return load_codec_from_run(path)
