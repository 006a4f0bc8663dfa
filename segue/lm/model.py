"""A decoder-only transformer with a preallocated KV cache. ids [B, T] -> logits [B, T, V].

Pre-norm blocks (LayerNorm without bias), SDPA attention with grouped key/value heads (n_kv_head
<= n_head; 1 is multi-query attention), rotary positions, tanh-GELU MLP. The same weights serve
training (`forward`, causal SDPA over the whole sequence) and sampling (`extend`: append T tokens
to a `KVCache` and get the logits of the last one; a step costs one position).

Rotary positions are complex multiplies over the fused qkv projection (k and v in one, v's
factor being 1), and a decoding step (`Block.step`) calls a dozen kernels per layer on weight
views made once per cache: on a CPU, a step is bound by reading the weights and by per-call
overhead, not by arithmetic. At batch 1 on the CPU, the whole step is one C call instead
(`segue.lm.fused`), with the same logits to float32 rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from segue.lm.config import LMConfig
from segue.lm.fused import FusedDecoder, FusedWeights, weights_for
from segue.lm.fused import library as fused_library
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


def rotary_table(max_len: int, head_dim: int, base: float) -> torch.Tensor:
    """[max_len, 2, head_dim/2, 2]: (cos, sin) pairs for q and k, then (1, 0) for v."""
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv[None]
    rotate = torch.stack([angles.cos(), angles.sin()], dim=-1)  # [T, hd/2, 2]
    keep = torch.stack([torch.ones_like(angles), torch.zeros_like(angles)], dim=-1)
    return torch.stack([rotate, keep], dim=1).float()


def _rotate(pairs: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """(..., hd/2, 2) pairs as complex numbers times complex `rope` (broadcast), back to real."""
    if pairs.dtype != torch.float32:  # complex multiply in float32 (bf16 autocast)
        return torch.view_as_real(torch.view_as_complex(pairs.float()) * rope).to(pairs.dtype)
    return torch.view_as_real(torch.view_as_complex(pairs) * rope)


class Block(nn.Module):
    """x + attention(norm(x)), then x + mlp(norm(x)).

    Attention has n_head query heads and n_kv_head key/value heads (query head h reads kv head
    h // (n_head / n_kv_head)); one fused projection makes q, k and v.
    """

    def __init__(self, config: LMConfig):
        super().__init__()
        d, hidden, hd = config.d_model, int(config.mlp_ratio * config.d_model), config.head_dim
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads, hd
        self.dropout = config.dropout
        self.norm1 = nn.LayerNorm(d, bias=False)
        self.qkv = nn.Linear(d, (self.n_head + 2 * self.n_kv_head) * hd, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.norm2 = nn.LayerNorm(d, bias=False)
        self.up = nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor,
        kv: torch.Tensor | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        """x [B, T, D], rope [T, 2, hd/2] complex; kv: this layer's cache [2, B, G, L, hd]."""
        batch, length, d = x.shape
        heads, groups, hd = self.n_head, self.n_kv_head, self.head_dim
        p = self.dropout if self.training else 0.0
        qkv = F.linear(F.layer_norm(x, (d,), self.norm1.weight), self.qkv.weight)
        q = qkv[..., : heads * hd].view(batch, length, heads, -1, 2)
        q = _rotate(q, rope[:, :1]).view(batch, length, heads, hd).transpose(1, 2)
        new = qkv[..., heads * hd :].view(batch, length, 2, groups, -1, 2)
        new = _rotate(new, rope[:, :, None]).view(batch, length, 2, groups, hd)
        new = new.permute(2, 0, 3, 1, 4)  # [2, B, G, T, hd]
        gqa = groups != heads
        if kv is None:
            k, v = new
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, enable_gqa=gqa)
        else:
            end = start + length
            kv[:, :, :, start:end] = new
            k, v = kv.narrow(3, 0, end)
            if start == 0:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
            else:  # a chunk after cached tokens: query i sees keys <= start + i
                i = torch.arange(length, device=x.device)[:, None]
                mask = torch.arange(end, device=x.device)[None] <= start + i
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        y = F.linear(y.transpose(1, 2).reshape(batch, length, d), self.proj.weight)
        x = x + (F.dropout(y, p, True) if p else y)
        h = F.layer_norm(x, (d,), self.norm2.weight)
        y = F.linear(F.gelu(F.linear(h, self.up.weight), approximate="tanh"), self.down.weight)
        return x + (F.dropout(y, p, True) if p else y)

    def step_weights(self) -> tuple[torch.Tensor, ...]:
        """The weights as `step` reads them: norms, and matrices transposed to [in, out]."""
        return (
            self.norm1.weight,
            self.qkv.weight.t(),
            self.proj.weight.t(),
            self.norm2.weight,
            self.up.weight.t(),
            self.down.weight.t(),
        )

    def step(
        self,
        x: torch.Tensor,
        weights: tuple[torch.Tensor, ...],
        rope: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        kv: torch.Tensor,
        pos: int,
    ) -> torch.Tensor:
        """`forward` for one new position in as few kernels as possible (on a CPU, decoding is
        bound by per-call overhead): x [B, D], kv [2, B, G, L, hd], rope (cos, signed sin,
        pair swap) over the whole qkv row: rotated = qkv * cos + qkv[swap] * sin.

        The queries of a kv head attend as a short sequence of their own: q [B, G, H/G, hd]
        against that head's keys, one SDPA call with no repeated keys.
        """
        norm1, w_qkv, w_proj, norm2, w_up, w_down = weights
        cos, sin, swap = rope
        batch, d = x.shape
        heads, groups, hd = self.n_head, self.n_kv_head, self.head_dim
        qkv = torch.mm(F.layer_norm(x, (d,), norm1), w_qkv)
        qkv = torch.addcmul(qkv * cos, qkv.index_select(1, swap), sin)
        q = qkv[:, : heads * hd].view(batch, groups, heads // groups, hd)
        new = qkv[:, heads * hd :].view(batch, 2, groups, 1, hd)
        kv[:, :, :, pos : pos + 1] = new.transpose(0, 1)
        keys, values = kv.narrow(3, 0, pos + 1)
        y = F.scaled_dot_product_attention(q, keys, values)
        x = torch.addmm(x, y.view(batch, d), w_proj)
        h = F.gelu(torch.mm(F.layer_norm(x, (d,), norm2), w_up), approximate="tanh")
        return torch.addmm(x, h, w_down)


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
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = nn.LayerNorm(config.d_model, bias=False)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        table = rotary_table(config.max_seq_len, config.head_dim, config.rope_base)
        self.register_buffer("rope", table, persistent=False)
        self._step_rope: dict = {}
        self.apply(self._init)
        for block in self.blocks:  # GPT-2: residual projections scaled by depth
            for linear in (block.proj, block.down):
                nn.init.normal_(linear.weight, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def _rope(self, start: int, length: int) -> torch.Tensor:
        if start + length > self.config.max_seq_len:
            raise ValueError(
                f"position {start + length} is past max_seq_len={self.config.max_seq_len}"
            )
        return torch.view_as_complex(self.rope[start : start + length].float())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T] -> logits [B, T, vocab_size] (causal)."""
        x = self.embed(ids)
        if self.config.dropout and self.training:
            x = F.dropout(x, self.config.dropout, True)
        rope = self._rope(0, ids.shape[1])
        for block in self.blocks:
            x = block(x, rope)
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
        if key not in self._step_rope:
            self._step_rope = {key: self._make_step_rope(dtype)}  # one dtype/device at a time
        return self._step_rope[key]

    def _make_step_rope(self, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        c = self.config
        table = self.rope.float()  # [T, 2, hd/2, (cos, sin)]: rotate, then keep (v)
        cos = table[..., 0].repeat_interleave(2, dim=-1)  # [T, 2, hd]
        sin = torch.stack([-table[..., 1], table[..., 1]], dim=-1).flatten(-2)
        rotated = c.n_head + c.kv_heads  # q and k heads, then v's
        slots = torch.tensor([0] * rotated + [1] * c.kv_heads, device=table.device)
        cos, sin = (t[:, slots].flatten(1).to(dtype) for t in (cos, sin))
        swap = torch.arange(cos.shape[1], device=table.device).view(-1, 2).flip(-1).flatten()
        return cos, sin, swap

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
                x = block(x, rope, kv, start)
            x = x[:, -1]
        cache.length = start + length
        h = F.layer_norm(x, (x.shape[-1],), self.norm.weight)
        return torch.mm(h, cache.head[:, lo:hi])

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
