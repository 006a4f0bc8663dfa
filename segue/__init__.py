"""segue: AudioLM in PyTorch — audio generation as language modeling, trained from audio alone."""

__version__ = "0.1.0"
