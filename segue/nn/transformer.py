"""The transformer block of every segue model: pre-norm, SDPA attention, GELU MLP.

    x = x + dropout(attn(norm1(x)))    # [B, T, C]
    x = x + dropout(mlp(norm2(x)))     # [B, T, C]

Options cover the three users: `causal` (the LMs) or bidirectional with a key-padding mask
(SoundStorm, the semantic model); grouped key/value heads (`n_kv_head` < `n_head`, the LMs);
rotary positions when a table is passed (LMs, SoundStorm; the semantic model has a conv position
embedding instead); biases and exact GELU (the semantic model, HuBERT's choices); a KV cache for
sampling (`forward` with `kv`, and `step` for one position in few kernels).

Parameter names: blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.up, mlp.down}. Weights saved
before this module existed (blocks.i.{qkv, proj, up, down} in the LMs and SoundStorm,
blocks.i.{qkv, out, ffn.0, ffn.3} in the semantic model) load through `upgrade_keys`, which
`Block` runs as a load_state_dict pre-hook and the training engine runs on a checkpoint it
resumes from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from segue.nn.rotary import apply_rotary

V = TypeVar("V")


class Attention(nn.Module):
    """Multi-head self-attention with n_head query heads and n_kv_head key/value heads (query
    head h reads kv head h // (n_head / n_kv_head)); one fused projection makes q, k and v:
    qkv [B, T, (H + 2G) hd] = [q heads | k heads | v heads]."""

    def __init__(
        self,
        d_model: int,
        n_head: int,
        n_kv_head: int | None = None,
        *,
        causal: bool = False,
        bias: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.n_head, self.n_kv_head = n_head, n_kv_head or n_head
        if d_model % n_head or n_head % self.n_kv_head:
            raise ValueError(
                f"d_model={d_model} must split into n_head={n_head} heads, in groups of "
                f"n_kv_head={self.n_kv_head}"
            )
        self.head_dim = d_model // n_head
        self.causal, self.dropout = causal, dropout
        self.qkv = nn.Linear(d_model, (n_head + 2 * self.n_kv_head) * self.head_dim, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        kv: torch.Tensor | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        """x [B, T, C] -> [B, T, C].

        rope: rotary table rows of x's positions [T, hd/2, 2] (None: no rotary positions).
        mask: bool, True where a query may attend to a key, broadcast to [B, H, T, S]
            (e.g. [B, 1, 1, S] for key padding); with `causal`, combined with the causal mask.
        kv: a cache [2, B, G, L, hd] holding `start` positions: x's keys and values are written
            at [start, start + T) and x attends to all start + T of them (causally).
        """
        batch, length, d = x.shape
        heads, groups, hd = self.n_head, self.n_kv_head, self.head_dim
        q, k, v = self.qkv(x).split([heads * hd, groups * hd, groups * hd], dim=-1)
        q = q.view(batch, length, heads, hd)  # [B, T, H, hd]
        k, v = k.view(batch, length, groups, hd), v.view(batch, length, groups, hd)  # [B, T, G, hd]
        if rope is not None:
            q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H or G, T, hd]
        end = start + length
        if kv is not None:
            kv[0, :, :, start:end], kv[1, :, :, start:end] = k, v
            k, v = kv.narrow(3, 0, end)  # [B, G, start + T, hd]
        if self.causal and (start or mask is not None):  # query i sees keys <= start + i
            i = torch.arange(length, device=x.device)[:, None]
            allowed = torch.arange(end, device=x.device)[None] <= start + i  # [T, start + T]
            mask = allowed if mask is None else mask & allowed
        gqa = {"enable_gqa": True} if groups != heads else {}  # (torch >= 2.5 only)
        p = self.dropout if self.training else 0.0
        is_causal = self.causal and mask is None
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal, **gqa
        )  # [B, H, T, hd]
        return self.proj(y.transpose(1, 2).reshape(batch, length, d))


class MLP(nn.Module):
    """[B, T, C] -> up to `hidden` -> GELU (tanh approximation or exact) -> dropout -> down."""

    def __init__(
        self,
        d_model: int,
        hidden: int,
        *,
        bias: bool = False,
        gelu: str = "tanh",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.up = nn.Linear(d_model, hidden, bias=bias)
        self.down = nn.Linear(hidden, d_model, bias=bias)
        self.gelu, self.dropout = gelu, dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.up(x), approximate=self.gelu)  # [B, T, hidden]
        return self.down(F.dropout(h, self.dropout, self.training))  # [B, T, C]


class Block(nn.Module):
    """x + attn(norm1(x)), then x + mlp(norm2(x)); see the module docstring for the options.

    dropout: on both residual branches (and on the attention weights unless `attn_dropout` is
    given); mlp_dropout: on the MLP's hidden layer.
    """

    def __init__(
        self,
        d_model: int,
        n_head: int,
        *,
        n_kv_head: int | None = None,
        mlp_ratio: float = 4.0,
        causal: bool = False,
        bias: bool = False,
        gelu: str = "tanh",
        dropout: float = 0.0,
        attn_dropout: float | None = None,
        mlp_dropout: float = 0.0,
    ):
        super().__init__()
        attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.norm1 = nn.LayerNorm(d_model, bias=bias)
        self.attn = Attention(
            d_model, n_head, n_kv_head, causal=causal, bias=bias, dropout=attn_dropout
        )
        self.norm2 = nn.LayerNorm(d_model, bias=bias)
        hidden = int(mlp_ratio * d_model)
        self.mlp = MLP(d_model, hidden, bias=bias, gelu=gelu, dropout=mlp_dropout)
        self.drop = nn.Dropout(dropout)
        self.register_load_state_dict_pre_hook(_upgrade_hook)

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        kv: torch.Tensor | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        """x [B, T, C] -> [B, T, C]; rope, mask, kv, start: see `Attention.forward`."""
        x = x + self.drop(self.attn(self.norm1(x), rope, mask, kv, start))
        return x + self.drop(self.mlp(self.norm2(x)))

    # ---- one decoding position in few kernels (the LMs' sampling at batch > 1)
    def step_weights(self) -> tuple[torch.Tensor, ...]:
        """The weights as `step` reads them: norms, and matrices transposed to [in, out] (views:
        valid while the parameters are the same tensors)."""
        attn, mlp = self.attn, self.mlp
        if not attn.causal or attn.qkv.bias is not None or self.norm1.bias is not None:
            raise ValueError("Block.step runs causal blocks without biases only")
        return (
            self.norm1.weight,
            attn.qkv.weight.t(),
            attn.proj.weight.t(),
            self.norm2.weight,
            mlp.up.weight.t(),
            mlp.down.weight.t(),
        )

    def step(
        self,
        x: torch.Tensor,
        weights: tuple[torch.Tensor, ...],
        rope: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        kv: torch.Tensor,
        pos: int,
    ) -> torch.Tensor:
        """`forward` (eval) for one new position at `pos`: x [B, C] -> [B, C], the same numbers
        to float32 rounding, in a dozen kernels (on a CPU, decoding is bound by per-call
        overhead). weights: `step_weights()`; kv [2, B, G, L, hd]; rope: cos[pos], sin[pos],
        swap of `segue.nn.rotary.step_rotary` (rotated = qkv * cos + qkv[swap] * sin).

        The queries of a kv head attend as a short sequence of their own: q [B, G, H/G, hd]
        against that head's keys, one SDPA call with no repeated keys.
        """
        norm1, w_qkv, w_proj, norm2, w_up, w_down = weights
        cos, sin, swap = rope
        batch, d = x.shape
        heads, groups, hd = self.attn.n_head, self.attn.n_kv_head, self.attn.head_dim
        qkv = torch.mm(F.layer_norm(x, (d,), norm1), w_qkv)  # [B, (H + 2G) hd]
        qkv = torch.addcmul(qkv * cos, qkv.index_select(1, swap), sin)
        q = qkv[:, : heads * hd].view(batch, groups, heads // groups, hd)
        new = qkv[:, heads * hd :].view(batch, 2, groups, 1, hd)
        kv[:, :, :, pos : pos + 1] = new.transpose(0, 1)
        keys, values = kv.narrow(3, 0, pos + 1)  # [B, G, pos + 1, hd]
        y = F.scaled_dot_product_attention(q, keys, values)  # [B, G, H/G, hd]
        x = torch.addmm(x, y.view(batch, d), w_proj)
        h = F.gelu(torch.mm(F.layer_norm(x, (d,), norm2), w_up), approximate=self.mlp.gelu)
        return torch.addmm(x, h, w_down)


def init_weights(module: nn.Module) -> None:
    """GPT-2's init, for `model.apply`: Linear and Embedding weights ~ N(0, 0.02), biases 0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def init_residuals(blocks: Iterable[Block], n_layer: int) -> None:
    """GPT-2: the projections into the residual stream ~ N(0, 0.02 / sqrt(2 n_layer)), so the
    stream's variance does not grow with depth."""
    for block in blocks:
        for linear in (block.attn.proj, block.mlp.down):
            nn.init.normal_(linear.weight, std=0.02 / math.sqrt(2 * n_layer))


#: Block children saved before `segue.nn` (LMs, SoundStorm; semantic model) -> today's names.
LEGACY_NAMES = {
    "qkv": "attn.qkv",
    "proj": "attn.proj",
    "up": "mlp.up",
    "down": "mlp.down",
    "out": "attn.proj",
    "ffn.0": "mlp.up",
    "ffn.3": "mlp.down",
}


def _upgrade(key: str, prefix: str) -> str:
    name, _, tensor = key[len(prefix) :].rpartition(".")
    new = LEGACY_NAMES.get(name)
    return f"{prefix}{new}.{tensor}" if new else key


def upgrade_keys(module: nn.Module, keys: Iterable[str]) -> list[str]:
    """State-dict (or parameter) names of `module`, saved before its blocks were `segue.nn`
    Blocks, renamed to today's names (others unchanged, order kept)."""
    prefixes = [
        f"{name}." if name else "" for name, m in module.named_modules() if isinstance(m, Block)
    ]
    out = []
    for key in keys:
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        out.append(_upgrade(key, prefix) if prefix else key)
    return out


def upgrade_state_dict(module: nn.Module, state: Mapping[str, V]) -> dict[str, V]:
    """`state` with `upgrade_keys` applied (a new dict; the values are the same objects)."""
    return dict(zip(upgrade_keys(module, state), state.values()))


def _upgrade_hook(module: nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
    """load_state_dict pre-hook of a Block: rename its legacy keys in place."""
    for key in [k for k in state if k.startswith(prefix)]:
        new = _upgrade(key, prefix)
        if new != key and new not in state:
            state[new] = state.pop(key)
