"""Acoustic tokens: a SoundStream-style neural codec (encoder, residual VQ, decoder, GAN losses)."""

from segue.codec.config import CodecConfig, preset
from segue.codec.model import Codec

__all__ = ["Codec", "CodecConfig", "preset"]
