import math

import torch

from segue.codec.quantizer import ResidualVectorQuantizer, perplexity


def make(n_codebooks=4, size=16, dropout=0.0, threshold=1e-3):
    torch.manual_seed(0)
    return ResidualVectorQuantizer(
        8, n_codebooks, size, 4, dropout=dropout, dead_code_threshold=threshold
    )


def test_more_levels_reconstruct_better_after_training():
    rvq = make()
    x = torch.randn(4, 8, 50)
    rvq.train()
    optimizer = torch.optim.Adam(rvq.parameters(), lr=1e-2)
    for _ in range(60):
        out = rvq(x)
        loss = torch.mean((out.quantized - x) ** 2) + out.commitment_loss + out.codebook_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    rvq.eval()
    errors = [torch.mean((rvq(x, n_quantizers=n).quantized - x) ** 2).item() for n in (1, 2, 4)]
    assert errors[0] > errors[1] > errors[2]


def test_codes_decode_to_the_quantized_latents():
    rvq = make()
    rvq.train()
    x = torch.randn(2, 8, 20)
    rvq(x)
    rvq.eval()
    out = rvq(x, n_quantizers=3)
    assert out.codes.shape == (2, 3, 20)
    assert torch.allclose(rvq.decode(out.codes), out.quantized, atol=1e-5)


def test_kmeans_init_uses_the_codebook():
    rvq = make(size=16)
    rvq.train()
    out = rvq(torch.randn(8, 8, 100))
    assert bool(rvq.levels[0].initialized)
    assert perplexity(out.usage)[0] > 8  # most of the 16 codes are in use from the start


def test_quantizer_dropout_varies_levels_per_example():
    rvq = make(dropout=1.0)
    rvq.train()
    x = torch.randn(64, 8, 10)
    rvq(x)  # init
    out = rvq(x)
    # Examples that use fewer levels reconstruct worse: errors differ across the batch.
    err = ((out.quantized - x) ** 2).mean(dim=(1, 2))
    assert err.max() > 1.5 * err.min()
    rvq.eval()
    assert rvq(x).codes.shape[1] == 4  # no dropout at inference


def test_dead_codes_are_restarted_onto_data():
    rvq = make(n_codebooks=1, size=16, threshold=0.5)
    rvq.train()
    x = torch.randn(4, 8, 40)
    rvq(x)
    level = rvq.levels[0]
    # Make half of the codebook point far away from all data: they are never picked.
    with torch.no_grad():
        level.codebook.weight[8:] = -level.codebook.weight[:8].mean(0) * 100
    before = level.codebook.weight[8:].clone()
    start = rvq.restarts
    per_call = [rvq(x).restarted for _ in range(80)]  # usage EMA (decay 0.99) falls below
    assert rvq.restarts - start == sum(per_call) > 0  # the threshold after ~70 steps
    rvq.eval()
    assert rvq(x).restarted == 0  # nothing moves at inference
    assert not torch.allclose(level.codebook.weight[8:], before)


def test_perplexity_bounds():
    uniform = torch.ones(2, 8)
    one_hot = torch.zeros(1, 8)
    one_hot[0, 3] = 1
    assert torch.allclose(perplexity(uniform), torch.tensor([8.0, 8.0]))
    assert math.isclose(perplexity(one_hot).item(), 1.0, rel_tol=1e-5)


def test_residual_loss_alone_makes_levels_refine():
    """Trained only on its own losses (no reconstruction target), each level shrinks the
    residual: this is what the decoder-driven codec relies on."""
    rvq = make()
    x = torch.randn(4, 8, 50)
    rvq.train()
    optimizer = torch.optim.Adam(rvq.parameters(), lr=1e-2)
    first = None
    for _ in range(100):
        out = rvq(x)
        loss = out.residual_loss + out.commitment_loss + out.codebook_loss
        first = first if first is not None else out.residual_loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert out.residual_loss.item() < 0.9 * first
    rvq.eval()
    errors = [torch.mean((rvq(x, n_quantizers=n).quantized - x) ** 2).item() for n in (1, 2, 4)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.8 * torch.mean(x**2).item()


def test_ema_levels_are_running_kmeans_of_their_residuals():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(8, 3, 16, 4, kind="ema")
    x = torch.randn(4, 8, 50)
    rvq.train()
    for _ in range(30):  # no optimizer: EMA updates alone fit the codes
        rvq(x)
    rvq.eval()
    errors = [torch.mean((rvq(x, n_quantizers=n).quantized - x) ** 2).item() for n in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[0] < torch.mean(x**2).item()
    out = rvq(x)
    assert torch.allclose(rvq.decode(out.codes), out.quantized, atol=1e-5)


def test_unknown_quantizer_kind_is_refused():
    import pytest

    with pytest.raises(ValueError, match="quantizer kind"):
        ResidualVectorQuantizer(8, 2, 16, 4, kind="vqgan")
