"""Open an acoustic tokenizer from wherever it lives: an exported folder, a training run, or a
Hugging Face model (`hf:facebook/encodec_24khz`, `hf:/local/dac_folder`)."""

from __future__ import annotations

from pathlib import Path

from segue.codec.model import Codec
from segue.pretrained import WEIGHTS_NAME


def load_codec(location: str | Path):
    """A `Codec` (or `PretrainedCodec` for `hf:` locations), in eval mode."""
    text = str(location)
    if text.startswith("hf:"):
        from segue.codec.hf import PretrainedCodec

        return PretrainedCodec.from_pretrained(text[3:])
    path = Path(location)
    if (path / WEIGHTS_NAME).is_file():
        return Codec.from_pretrained(path)
    if (path / "checkpoints").is_dir():
        from segue.codec.train import load_codec_from_run

        return load_codec_from_run(path)
    raise FileNotFoundError(
        f"{path}: neither an exported codec ({WEIGHTS_NAME} + config.json) "
        "nor a codec run folder (checkpoints/)"
    )
