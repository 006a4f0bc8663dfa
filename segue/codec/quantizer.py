"""Residual vector quantizer (RVQ) with the known cures for codebook collapse.

Each level quantizes what the previous levels left over. Per level, as in DAC: the latent is
projected to a small `codebook_dim`, codes are compared by cosine similarity (L2-normalised
lookups use the whole codebook far better than raw Euclidean ones), and a straight-through
estimator carries gradients past the argmax. On top of that:
  * k-means initialisation of each codebook from the first training batch;
  * dead-code restart: codes whose running usage falls below a threshold are moved onto random
    recent residuals (synchronised across DDP ranks);
  * quantizer dropout: each training example uses only its first n ~ U{1..Q} levels (half of the
    time), so one model serves every bitrate from 1 to Q levels.

`kind="ema"` swaps each level for SoundStream/EnCodec's codebook instead: Euclidean codes in the
full latent space, moved by an exponential moving average of the residuals assigned to them (no
gradient, so each level is exactly a running k-means of its residual).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from segue.errors import InputError


@dataclass
class QuantizerOutput:
    """quantized: [B, D, T]; codes: [B, Q, T] int64; losses are scalars (0 when not training);
    usage: [Q, K] fraction of frames that picked each code in this batch; restarted: dead
    codes moved onto latents by this call (training only; all levels); first: level 0's output
    (what `CodecRunConfig.semantic` teaches to predict the semantic tokens).

    residual_loss: mean over levels of |level output - the residual it quantized|^2 relative to
    |residual|^2 (scale-free), which makes
    each level refine what the previous ones left (without it, the factorized projections give
    levels that do not shrink the residual, and levels beyond the first add nothing)."""

    quantized: torch.Tensor
    codes: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    residual_loss: torch.Tensor
    usage: torch.Tensor
    restarted: int = 0
    first: torch.Tensor | None = None  # [B, D, T] level 0's output alone (straight-through)


def _kmeans(
    samples: torch.Tensor, k: int, iterations: int, generator: torch.Generator
) -> torch.Tensor:
    """k-means of [N, d] vectors into k centroids, assigning by cosine similarity (as the
    quantizer looks codes up) but averaging the raw vectors, so centroids keep the latents'
    scale. N may be < k: then codes repeat, with jitter."""
    n = samples.shape[0]
    if n < k:
        index = torch.randint(n, (k,), generator=generator)
    else:
        index = torch.randperm(n, generator=generator)[:k]
    centroids = samples[index].clone()
    if n < k:
        centroids += 1e-2 * samples.std() * torch.randn(centroids.shape, generator=generator)
    directions = F.normalize(samples, dim=1)
    for _ in range(iterations):
        assign = (directions @ F.normalize(centroids, dim=1).T).argmax(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, samples)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    return centroids


class VectorQuantizer(nn.Module):
    """One RVQ level: [B, D, T] residual -> (quantized [B, D, T], codes [B, T])."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int, usage_decay: float = 0.99):
        super().__init__()
        self.codebook_size = codebook_size
        self.in_proj = weight_norm(nn.Conv1d(dim, codebook_dim, 1))
        self.out_proj = weight_norm(nn.Conv1d(codebook_dim, dim, 1))
        self.codebook = nn.Embedding(codebook_size, codebook_dim)
        self.usage_decay = usage_decay
        self.register_buffer("usage_ema", torch.full((codebook_size,), 1.0 / codebook_size))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def lookup(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, d, T] projected latents -> [B, T] nearest codes by cosine similarity."""
        flat = F.normalize(latents.transpose(1, 2).reshape(-1, latents.shape[1]), dim=1)
        scores = flat @ F.normalize(self.codebook.weight, dim=1).T
        return scores.argmax(dim=1).view(latents.shape[0], latents.shape[2])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, T] codes -> [B, D, T] contribution of this level."""
        return self.out_proj(self.codebook(codes).transpose(1, 2))

    def forward(self, residual: torch.Tensor):
        latents = self.in_proj(residual)  # [B, d, T]
        if self.training and not bool(self.initialized):
            self._kmeans_init(latents)
        codes = self.lookup(latents)
        chosen = self.codebook(codes).transpose(1, 2)  # [B, d, T]
        commitment = F.mse_loss(latents, chosen.detach())
        codebook = F.mse_loss(chosen, latents.detach())
        straight_through = latents + (chosen - latents).detach()
        # Same values twice, different gradients: `output` carries the straight-through
        # gradient to the encoder; `decoded` trains the codebook and out_proj to rebuild the
        # residual (the residual loss), without pushing the encoder.
        output = self.out_proj(straight_through)
        decoded = self.out_proj(chosen) if self.training else output
        return output, codes, commitment, codebook, latents, decoded

    @torch.no_grad()
    def _kmeans_init(self, latents: torch.Tensor) -> None:
        samples = latents.transpose(1, 2).reshape(-1, latents.shape[1]).float()
        generator = torch.Generator().manual_seed(0)
        centroids = _kmeans(samples.cpu(), self.codebook_size, iterations=10, generator=generator)
        self.codebook.weight.data.copy_(centroids.to(self.codebook.weight))
        _broadcast(self.codebook.weight.data)
        self.initialized.fill_(True)

    @torch.no_grad()
    def update_usage_and_restart(
        self, codes: torch.Tensor, latents: torch.Tensor, mask: torch.Tensor, threshold: float
    ) -> tuple[torch.Tensor, int]:
        """Track code usage over the frames in `mask` [B, T]; move dead codes onto random latents.

        Returns (this batch's usage [K], number of codes restarted).
        """
        counts = torch.bincount(codes[mask], minlength=self.codebook_size).float()
        _all_reduce(counts)
        usage = counts / counts.sum().clamp_min(1.0)
        self.usage_ema.mul_(self.usage_decay).add_(usage, alpha=1 - self.usage_decay)
        dead = self.usage_ema < threshold / self.codebook_size
        n_dead = int(dead.sum())
        if n_dead:
            pool = latents.transpose(1, 2)[mask].float()
            if pool.shape[0]:
                pick = torch.randint(pool.shape[0], (n_dead,), device=pool.device)
                noise = 1e-3 * torch.randn(n_dead, pool.shape[1], device=pool.device)
                replacement = torch.zeros_like(self.codebook.weight)
                replacement[dead] = (pool[pick] + noise).to(replacement)
                _broadcast(replacement)  # every rank adopts rank 0's choice
                self.codebook.weight.data[dead] = replacement[dead]
                self.usage_ema[dead] = 1.0 / self.codebook_size
        return usage, n_dead


class EMAVectorQuantizer(nn.Module):
    """One RVQ level as in SoundStream/EnCodec: [B, D, T] -> nearest of K codes in R^D.

    Codes are running k-means centroids: `cluster_size` and `embed_sum` are EMAs of how many
    residual vectors each code took and of their sum; code = embed_sum / cluster_size. A saved
    model may leave `embed_sum` out (it is as large as the codebook, and embed x cluster_size):
    loading rebuilds it from those two, so the EMA goes on from the same codes.
    """

    #: buffers a saved model may leave out (`Codec.saved_state`), rebuilt when it is loaded
    DERIVED = ("embed_sum",)

    def __init__(
        self, dim: int, codebook_size: int, decay: float = 0.99, usage_decay: float = 0.99
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.decay = decay
        self.usage_decay = usage_decay
        self.register_buffer("embed", torch.zeros(codebook_size, dim))
        self.register_buffer("embed_sum", torch.zeros(codebook_size, dim))
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("usage_ema", torch.full((codebook_size,), 1.0 / codebook_size))
        self.register_buffer("initialized", torch.tensor(False))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        embed, size = state_dict.get(prefix + "embed"), state_dict.get(prefix + "cluster_size")
        if prefix + "embed_sum" not in state_dict and embed is not None and size is not None:
            state_dict[prefix + "embed_sum"] = embed.float() * size.float()[:, None]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def lookup(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, D, T] -> [B, T] nearest codes (Euclidean)."""
        flat = latents.transpose(1, 2).reshape(-1, latents.shape[1]).float()
        distances = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ self.embed.T
            + self.embed.pow(2).sum(1)[None]
        )
        return distances.argmin(dim=1).view(latents.shape[0], latents.shape[2])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, T] codes -> [B, D, T]."""
        return F.embedding(codes, self.embed).transpose(1, 2)

    def forward(self, residual: torch.Tensor):
        if self.training and not bool(self.initialized):
            self._kmeans_init(residual)
        codes = self.lookup(residual)
        chosen = self.decode(codes).to(residual.dtype)
        commitment = F.mse_loss(residual, chosen.detach())
        output = residual + (chosen - residual).detach()
        return output, codes, commitment, residual.new_zeros(()), residual, chosen

    @torch.no_grad()
    def _kmeans_init(self, latents: torch.Tensor) -> None:
        samples = latents.transpose(1, 2).reshape(-1, latents.shape[1]).float().cpu()
        generator = torch.Generator().manual_seed(0)
        centroids = _kmeans(samples, self.codebook_size, iterations=10, generator=generator)
        self.embed.copy_(centroids.to(self.embed))
        _broadcast(self.embed)
        self.embed_sum.copy_(self.embed)
        self.cluster_size.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def update_usage_and_restart(
        self, codes: torch.Tensor, latents: torch.Tensor, mask: torch.Tensor, threshold: float
    ) -> tuple[torch.Tensor, int]:
        """EMA codebook update from the frames in `mask` [B, T], then dead-code restart.

        Returns (this batch's usage [K], number of codes restarted)."""
        flat = latents.transpose(1, 2)[mask].float()  # [N, D]
        chosen = codes[mask]
        counts = torch.bincount(chosen, minlength=self.codebook_size).float()
        sums = torch.zeros_like(self.embed_sum).index_add_(0, chosen, flat)
        _all_reduce(counts)
        _all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        # Laplace smoothing keeps never-chosen codes finite.
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (total + self.codebook_size * 1e-5) * total
        self.embed.copy_(self.embed_sum / smoothed[:, None])
        usage = counts / counts.sum().clamp_min(1.0)
        self.usage_ema.mul_(self.usage_decay).add_(usage, alpha=1 - self.usage_decay)
        dead = self.usage_ema < threshold / self.codebook_size
        n_dead = int(dead.sum())
        if n_dead and flat.shape[0]:
            pick = torch.randint(flat.shape[0], (n_dead,), device=flat.device)
            replacement = torch.zeros_like(self.embed)
            replacement[dead] = flat[pick]
            _broadcast(replacement)
            self.embed[dead] = replacement[dead]
            self.embed_sum[dead] = replacement[dead]
            self.cluster_size[dead] = 1.0
            self.usage_ema[dead] = 1.0 / self.codebook_size
        return usage, n_dead


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _broadcast(tensor: torch.Tensor) -> None:
    if _distributed():
        dist.broadcast(tensor, src=0)


def _all_reduce(tensor: torch.Tensor) -> None:
    if _distributed():
        dist.all_reduce(tensor)


class ResidualVectorQuantizer(nn.Module):
    """Q levels of VectorQuantizer applied to successive residuals."""

    def __init__(
        self,
        dim: int,
        n_codebooks: int,
        codebook_size: int,
        codebook_dim: int,
        dropout: float = 0.0,
        dead_code_threshold: float = 1e-3,
        kind: str = "factorized",
    ):
        super().__init__()
        self.n_codebooks = n_codebooks
        self.codebook_size = codebook_size
        self.dropout = dropout
        self.dead_code_threshold = dead_code_threshold
        if kind == "factorized":
            levels = [VectorQuantizer(dim, codebook_size, codebook_dim) for _ in range(n_codebooks)]
        elif kind == "ema":
            levels = [EMAVectorQuantizer(dim, codebook_size) for _ in range(n_codebooks)]
        else:
            raise InputError(f"unknown quantizer kind {kind!r}: 'factorized' or 'ema'")
        self.kind = kind
        self.levels = nn.ModuleList(levels)
        self.restarts = 0  # total dead codes restarted (for logging)

    def forward(self, latents: torch.Tensor, n_quantizers: int | None = None) -> QuantizerOutput:
        """[B, D, T] -> QuantizerOutput using the first `n_quantizers` levels (all by default;
        in training, quantizer dropout draws a number per example)."""
        batch, _, frames = latents.shape
        if n_quantizers is not None and not 1 <= n_quantizers <= self.n_codebooks:
            raise InputError(
                f"n_quantizers must be in [1, {self.n_codebooks}] (this quantizer's levels), "
                f"got {n_quantizers}"
            )
        n_q = n_quantizers or self.n_codebooks
        if self.training and self.dropout > 0:
            levels_used = torch.full((batch,), self.n_codebooks, device=latents.device)
            drop = torch.rand(batch, device=latents.device) < self.dropout
            levels_used[drop] = torch.randint(
                1, self.n_codebooks + 1, (int(drop.sum()),), device=latents.device
            )
        else:
            levels_used = torch.full((batch,), n_q, device=latents.device)
        quantized = torch.zeros_like(latents)
        residual = latents
        codes, commitment, codebook, fit, usages, first = [], 0.0, 0.0, 0.0, [], None
        restarts = 0
        levels = self.levels[: max(n_q, int(levels_used.max()))]
        for q, level in enumerate(levels):
            contribution, level_codes, commit, book, projected, decoded = level(residual)
            active = (levels_used > q).to(latents.dtype)[:, None, None]  # [B, 1, 1]
            if self.training and self.kind == "factorized":
                weight = active.mean()
                # VQ-VAE's two terms in the full latent space, relative to the residual's energy:
                # the codes (and out_proj) move to the residual; the encoder, less strongly,
                # moves to its codes, so the decoder reads latents close to what it was given.
                energy = (residual.detach().pow(2) * active).mean().clamp_min(1e-8)
                to_codes = ((decoded - residual.detach()).pow(2) * active).mean()
                to_encoder = ((residual - decoded.detach()).pow(2) * active).mean()
                fit = fit + (to_codes + 0.25 * to_encoder) / energy / len(levels)
            quantized = quantized + contribution * active
            first = contribution if q == 0 else first
            residual = residual - contribution.detach() * active
            if self.training:
                weight = active.mean()
                commitment = commitment + commit * weight
                codebook = codebook + book * weight
                mask = (levels_used > q)[:, None].expand(batch, frames)
                usage, restarted = level.update_usage_and_restart(
                    level_codes, projected.detach(), mask, self.dead_code_threshold
                )
                restarts += restarted
            else:
                usage = torch.bincount(level_codes.flatten(), minlength=self.codebook_size).float()
                usage = usage / usage.sum()
            codes.append(level_codes)
            usages.append(usage)
        zero = latents.new_zeros(())
        self.restarts += restarts
        return QuantizerOutput(
            quantized=quantized,
            codes=torch.stack(codes, dim=1)[:, :n_q]
            if not self.training
            else torch.stack(codes, 1),
            commitment_loss=commitment if torch.is_tensor(commitment) else zero,
            codebook_loss=codebook if torch.is_tensor(codebook) else zero,
            residual_loss=fit if torch.is_tensor(fit) else zero,
            usage=torch.stack(usages),
            restarted=restarts,
            first=first,
        )

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, Q', T] codes (Q' <= Q, lowest levels first) -> [B, D, T] quantized latents."""
        if codes.shape[1] > self.n_codebooks:
            raise InputError(
                f"got {codes.shape[1]} code levels, the quantizer has {self.n_codebooks}"
            )
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise InputError(
                f"codes must be in [0, {self.codebook_size}), got "
                f"[{int(codes.min())}, {int(codes.max())}]"
            )
        return sum(self.levels[q].decode(codes[:, q]) for q in range(codes.shape[1]))


def perplexity(usage: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of each row of [Q, K] usage: the effective number of codes per level."""
    p = usage / usage.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum(dim=-1))
