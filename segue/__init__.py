"""segue: AudioLM in PyTorch — audio generation as language modeling, trained from audio alone."""

from pathlib import Path

__version__ = "0.1.0"
#: the speech bundle shipped in the package: the default model of `segue continue` & co., and
#: the starting point of `segue recipe finetune`
PACKAGED_BUNDLE = Path(__file__).resolve().parent / "assets" / "speech-tiny"
