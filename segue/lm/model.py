"""A decoder-only transformer with a preallocated KV cache. ids [B, T] -> logits [B, T, V].

Pre-norm blocks (LayerNorm without bias), SDPA attention with grouped key/value heads (n_kv_head
<= n_head; 1 is multi-query attention), rotary positions, tanh-GELU MLP. The same weights serve
training (`forward`, causal SDPA over the whole sequence) and sampling (`extend`: append T tokens
to a `DecodeSession` and get the logits of the last one; a step costs one position).

The blocks are causal `segue.nn.Block`s. A decoding session (`segue.lm.decode.DecodeSession`)
owns the cache and the step: `Block.step` per layer, a dozen kernels on weight views made once
per session (on a CPU, bound by reading the weights and by per-call overhead, not by
arithmetic), or, for small batches on the CPU, the whole step in one C call (`segue.lm.fused`),
with the same logits to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segue.errors import InputError
from segue.lm.config import LMConfig
from segue.lm.decode import DecodeSession
from segue.lm.fused import FusedWeights, weights_for
from segue.lm.loss import TokenLoss, range_loss, token_loss
from segue.nn import Block, init_residuals, init_weights, rotary_table, step_rotary
from segue.pretrained import PretrainedMixin


class Transformer(nn.Module, PretrainedMixin):
    """Token embedding -> n_layer blocks -> LayerNorm -> linear head (untied)."""

    config_class = LMConfig

    def __init__(self, config: LMConfig):
        super().__init__()
        if config.vocab_size is None or config.max_seq_len is None:
            raise InputError(
                "LMConfig.vocab_size and max_seq_len must be set (they come from the layout)"
            )
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(
            Block(
                config.d_model,
                config.n_head,
                n_kv_head=config.kv_heads,
                mlp_ratio=config.mlp_ratio,
                causal=True,
                dropout=config.dropout,
                attn_dropout=config.attention_dropout,
            )
            for _ in range(config.n_layer)
        )
        self.norm = nn.LayerNorm(config.d_model, bias=False)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        table = rotary_table(config.max_seq_len, config.head_dim, config.rope_base)
        self.register_buffer("rope", table, persistent=False)  # [max_seq_len, hd/2, 2]
        self._step_rope: dict = {}
        self.apply(init_weights)
        init_residuals(self.blocks, config.n_layer)

    def _rope(self, start: int, length: int) -> torch.Tensor:
        """Rotary table rows of positions [start, start + length): [length, hd/2, 2]."""
        if start + length > self.config.max_seq_len:
            raise InputError(
                f"position {start + length} is past max_seq_len={self.config.max_seq_len}"
            )
        return self.rope[start : start + length]

    def forward(
        self,
        ids: torch.Tensor,
        target: torch.Tensor | None = None,
        ranges: Sequence[tuple[int, int]] | None = None,
    ) -> torch.Tensor | TokenLoss:
        """ids [B, T] -> logits [B, T, vocab_size] (causal). With target [B, T] (IGNORE where
        there is none): the next-token `TokenLoss` instead, over the whole vocabulary, or with
        ranges over each target's own [lo, hi) (`segue.lm.loss`; the head computes only those
        logits). The loss is computed here so that DDP and FSDP see it in the forward."""
        x = self.embed(ids)
        if self.config.dropout and self.training:
            x = F.dropout(x, self.config.dropout, True)
        rope = self._rope(0, ids.shape[1])
        for block in self.blocks:
            x = block(x, rope)  # [B, T, D]
        x = self.norm(x)
        if target is None:
            return self.head(x)
        if ranges is None:
            return token_loss(self.head(x), target)
        return range_loss(x, self.head.weight, target, ranges)

    def new_cache(
        self,
        batch: int,
        max_len: int | None = None,
        dtype: torch.dtype | None = None,
        *,
        fused: bool = True,
    ) -> DecodeSession:
        """An empty `DecodeSession` for `batch` sequences of up to `max_len` (default
        max_seq_len); fused: small CPU float32 batches step in C when it is available."""
        return DecodeSession(self, batch, max_len, dtype, fused=fused)

    def fused_weights(self) -> FusedWeights:
        """The weights as the C step reads them, remade when a parameter has changed."""
        return weights_for(self)

    def step_rope(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rotary positions over a whole fused qkv row, for `Block.step`: cos, sin
        [max_seq_len, (H + 2G) hd] (v's columns 1 and 0) and the pair swap [(H + 2G) hd]."""
        key = (dtype, self.rope.device)
        if key not in self._step_rope:  # one dtype/device at a time
            c = self.config
            self._step_rope = {key: step_rotary(self.rope, c.n_head, c.kv_heads, dtype)}
        return self._step_rope[key]

    def extend(
        self, ids: torch.Tensor, cache: DecodeSession, lo: int = 0, hi: int | None = None
    ) -> torch.Tensor:
        """Append ids [B, T] to `cache`; logits of the last position, ids [lo, hi) only: [B, hi-lo].

        T = 1 is a decoding step (one position of work, the session's backend); T > 1 prefills
        a prompt through the blocks' forward.
        """
        start, length = cache.length, ids.shape[1]
        if start + length > cache.max_len:
            raise InputError(f"cache of {cache.max_len} positions cannot take {start + length}")
        hi = self.config.vocab_size if hi is None else hi
        if length == 1:
            return cache.step(ids, lo, hi)
        x = self.embed(ids)
        rope = self._rope(start, length)
        for block, kv in zip(self.blocks, cache.layers):
            x = block(x, rope, kv=kv, start=start)  # [B, T, D]
        cache.length = start + length
        h = F.layer_norm(x[:, -1], (x.shape[-1],), self.norm.weight)
        return torch.mm(h, self.head.weight[lo:hi].t())

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
