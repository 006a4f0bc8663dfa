"""AudioLM's three language models: semantic, coarse acoustic and fine acoustic (docs/lm.md).

One decoder-only transformer (`model.py`, decoded through a `decode.DecodeSession`) serves all
three; each stage has its own token layout
(`layout.py`), training windows (`data.py`), training task (`train.py`) and sampling entry point
(`stages.py`). The LMs see token ids only: they never import the codec or the semantic model.
"""

from segue.lm.config import LMConfig, StageConfig, model_preset, stage_preset
from segue.lm.decode import DecodeSession
from segue.lm.layout import CoarseLayout, FineLayout, SemanticLayout, layout_for
from segue.lm.model import Transformer
from segue.lm.sampling import Generation, generate, sample
from segue.lm.stages import (
    StageLM,
    coarse_generate,
    fine_generate,
    load_lm,
    semantic_continue,
)

__all__ = [
    "CoarseLayout",
    "DecodeSession",
    "FineLayout",
    "Generation",
    "LMConfig",
    "SemanticLayout",
    "StageConfig",
    "StageLM",
    "Transformer",
    "coarse_generate",
    "fine_generate",
    "generate",
    "layout_for",
    "load_lm",
    "model_preset",
    "sample",
    "semantic_continue",
    "stage_preset",
]

KVCache = DecodeSession  # its former name, kept for old imports
