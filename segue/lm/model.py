"""A decoder-only transformer with a preallocated KV cache. ids [B, T] -> logits [B, T, V].

Pre-norm blocks (LayerNorm without bias), SDPA attention with grouped key/value heads (n_kv_head
<= n_head; 1 is multi-query attention), rotary positions, tanh-GELU MLP. The same weights serve
training (`forward`, causal SDPA over the whole sequence) and sampling (`extend`: append T tokens
to a `KVCache` and get the logits of the last one; a step costs one position).

The blocks are causal `segue.nn.Block`s. A decoding step (`Block.step`) calls a dozen kernels
per layer on weight views made once per cache: on a CPU, a step is bound by reading the weights
and by per-call overhead, not by arithmetic. At batch 1 on the CPU, the whole step is one C call
instead (`segue.lm.fused`), with the same logits to float32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segue.lm.config import LMConfig
from segue.lm.fused import FusedDecoder, FusedWeights, weights_for
from segue.lm.fused import library as fused_library
from segue.nn import Block, init_residuals, init_weights, rotary_table, step_rotary
from segue.pretrained import PretrainedMixin


class KVCache:
    """Keys and values of every layer, preallocated: kv [layers, 2, B, kv_heads, max_len, hd].

    `length` positions are filled. `Transformer.new_cache` builds one of the right shape and
    attaches what a decoding step reads, made once rather than at every step: the rotary table
    and the transposed weight views of each layer (views, not copies: valid while the model's
    parameters are the same tensors).
    """

    def __init__(
        self,
        n_layer: int,
        batch: int,
        n_kv_head: int,
        max_len: int,
        head_dim: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        self.kv = torch.zeros(
            n_layer, 2, batch, n_kv_head, max_len, head_dim, dtype=dtype, device=device
        )
        self.layers = list(self.kv.unbind(0))  # per layer [2, B, kv_heads, max_len, hd]
        self.length = 0
        self.rope: tuple[torch.Tensor, ...] = ()  # see Transformer.step_rope
        self.weights: list[tuple[torch.Tensor, ...]] = []  # per layer, see Block.step_weights
        self.head: torch.Tensor | None = None  # [D, V], the output layer transposed
        self.fused: FusedDecoder | None = None  # batch-1 steps in one C call (segue.lm.fused)

    @property
    def batch(self) -> int:
        return self.kv.shape[2]

    @property
    def max_len(self) -> int:
        return self.kv.shape[4]

    def reset(self) -> None:
        self.length = 0


class Transformer(nn.Module, PretrainedMixin):
    """Token embedding -> n_layer blocks -> LayerNorm -> linear head (untied)."""

    config_class = LMConfig

    def __init__(self, config: LMConfig):
        super().__init__()
        if config.vocab_size < 1 or config.max_seq_len < 1:
            raise ValueError(
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
            raise ValueError(
                f"position {start + length} is past max_seq_len={self.config.max_seq_len}"
            )
        return self.rope[start : start + length]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T] -> logits [B, T, vocab_size] (causal)."""
        x = self.embed(ids)
        if self.config.dropout and self.training:
            x = F.dropout(x, self.config.dropout, True)
        rope = self._rope(0, ids.shape[1])
        for block in self.blocks:
            x = block(x, rope)  # [B, T, D]
        return self.head(self.norm(x))

    def new_cache(
        self,
        batch: int,
        max_len: int | None = None,
        dtype: torch.dtype | None = None,
        *,
        fused: bool = True,
    ) -> KVCache:
        """An empty cache for `batch` sequences of up to `max_len` (default max_seq_len).

        fused: single-token steps of a batch-1 float32 CPU cache go through the C step
        (`segue.lm.fused`) when it is available.
        """
        weight = self.head.weight
        max_len = max_len or self.config.max_seq_len
        if max_len > self.config.max_seq_len:
            raise ValueError(f"max_len {max_len} is past max_seq_len={self.config.max_seq_len}")
        cache = KVCache(
            self.config.n_layer,
            batch,
            self.config.kv_heads,
            max_len,
            self.config.head_dim,
            dtype=dtype or weight.dtype,
            device=weight.device,
        )
        cache.rope = self.step_rope(cache.kv.dtype)
        cache.weights = [block.step_weights() for block in self.blocks]
        cache.head = self.head.weight.t()
        if fused and batch == 1 and cache.kv.dtype == weight.dtype == torch.float32:
            lib = fused_library() if weight.device.type == "cpu" else None
            if lib is not None:
                cache.fused = FusedDecoder(lib, self.fused_weights(), self, cache)
        return cache

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
        self, ids: torch.Tensor, cache: KVCache, lo: int = 0, hi: int | None = None
    ) -> torch.Tensor:
        """Append ids [B, T] to `cache`; logits of the last position, ids [lo, hi) only: [B, hi-lo].

        T = 1 is a decoding step (one position of work); T > 1 prefills a prompt.
        """
        start, length = cache.length, ids.shape[1]
        if start + length > cache.max_len:
            raise ValueError(f"cache of {cache.max_len} positions cannot take {start + length}")
        if length == 1 and cache.fused is not None and not torch.is_grad_enabled():
            logits = cache.fused.step(ids, lo, self.config.vocab_size if hi is None else hi)
            cache.length = start + 1
            return logits
        if length == 1:
            x = F.embedding(ids[:, 0], self.embed.weight)
            cos, sin, swap = cache.rope
            rope = (cos[start], sin[start], swap)
            for block, weights, kv in zip(self.blocks, cache.weights, cache.layers):
                x = block.step(x, weights, rope, kv, start)
        else:
            x = self.embed(ids)
            rope = self._rope(start, length)
            for block, kv in zip(self.blocks, cache.layers):
                x = block(x, rope, kv=kv, start=start)
            x = x[:, -1]
        cache.length = start + length
        h = F.layer_norm(x, (x.shape[-1],), self.norm.weight)
        return torch.mm(h, cache.head[:, lo:hi])

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
