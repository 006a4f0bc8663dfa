"""Logit filters, legal ranges during generation, per-sequence EOS stop."""

import torch

from segue.lm.config import LMConfig
from segue.lm.model import Transformer
from segue.lm.sampling import filter_logits, generate, sample


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[0.1, 3.0, 2.0, -1.0, 2.5]])
    kept = filter_logits(logits, top_k=2)
    assert torch.isfinite(kept).nonzero()[:, 1].tolist() == [1, 4]
    torch.testing.assert_close(kept[0, [1, 4]], logits[0, [1, 4]])


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.05, 0.5, 0.3, 0.15]])
    logits = probs.log()
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).nonzero()[:, 1].tolist() == [1]
    assert torch.isfinite(filter_logits(logits, top_p=0.6)).nonzero()[:, 1].tolist() == [1, 2]
    assert torch.isfinite(filter_logits(logits, top_p=0.9)).sum() == 3
    assert torch.isfinite(filter_logits(logits, top_p=1.0)).sum() == 4
    # top-k first, then the nucleus of the renormalised top-k
    assert torch.isfinite(filter_logits(logits, top_k=2, top_p=0.6)).nonzero()[:, 1].tolist() == [1]


def test_sample_draws_from_the_filtered_distribution():
    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.05, 0.5, 0.3, 0.15])
    logits = probs.log().expand(20000, 4)
    draws = sample(logits, top_p=0.75, generator=gen)
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert freq[0] == 0 and freq[3] == 0  # outside the nucleus {1, 2}
    torch.testing.assert_close(freq[1:3], torch.tensor([0.625, 0.375]), atol=0.02, rtol=0)
    draws = sample(logits, temperature=0.5, generator=gen)  # p^2, renormalised
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    expected = probs**2 / (probs**2).sum()
    torch.testing.assert_close(freq, expected, atol=0.02, rtol=0)
    assert sample(logits[:2], temperature=0).tolist() == [1, 1]
    assert sample(logits[:2], top_k=1, generator=gen).tolist() == [1, 1]


def tiny_model(vocab=60) -> Transformer:
    torch.manual_seed(0)
    return Transformer(LMConfig(vocab_size=vocab, max_seq_len=128, n_layer=1, n_head=2, d_model=16))


def test_every_generated_token_is_in_its_positions_range():
    model = tiny_model()
    ranges = [(0, 10), (10, 30), (30, 34), (34, 60)] * 12
    gen = torch.Generator().manual_seed(1)
    for settings in ({}, {"top_k": 3}, {"top_p": 0.5, "temperature": 2.0}, {"temperature": 5.0}):
        out = generate(
            model, torch.zeros(16, 2, dtype=torch.long), ranges, generator=gen, **settings
        )
        assert out.tokens.shape == (16, len(ranges))
        lo = torch.tensor([r[0] for r in ranges])
        hi = torch.tensor([r[1] for r in ranges])
        assert ((out.tokens >= lo) & (out.tokens < hi)).all()
        assert not out.ended.any() and (out.lengths == len(ranges)).all()
    # with a high temperature, every id of a range shows up: the ranges are not over-restricted
    assert set(out.tokens[:, 2::4].flatten().tolist()) == set(range(30, 34))


class ScriptedLM:
    """Emits ids from a script (row b, step i) regardless of input: tests the EOS logic."""

    def __init__(self, script):
        self.script, self.head = script, torch.nn.Linear(1, 1)
        self.step = 0

    def eval(self):
        return self

    def new_cache(self, batch, max_len):
        self.step = 0
        return None

    def extend(self, ids, cache, lo, hi):
        logits = torch.full((self.script.shape[0], hi - lo), -1e9)
        logits[torch.arange(len(logits)), self.script[:, self.step] - lo] = 0.0
        self.step += 1
        return logits


def test_generation_stops_each_sequence_at_eos_and_pads_after():
    eos, pad = 9, 8
    script = torch.tensor([[1, 2, 9, 3, 4, 5], [1, 2, 3, 4, 5, 6], [9, 1, 1, 1, 1, 1]])
    out = generate(
        ScriptedLM(script), torch.zeros(3, 1, dtype=torch.long), [(0, 10)] * 6, eos=eos, pad=pad
    )
    assert out.tokens.tolist() == [[1, 2, 9, 8, 8, 8], [1, 2, 3, 4, 5, 6], [9, 8, 8, 8, 8, 8]]
    assert out.lengths.tolist() == [2, 6, 0] and out.ended.tolist() == [True, False, True]
    # all ended: generation stops early
    script = torch.tensor([[1, 9, 0, 0], [9, 0, 0, 0]])
    out = generate(
        ScriptedLM(script), torch.zeros(2, 1, dtype=torch.long), [(0, 10)] * 4, eos=eos, pad=pad
    )
    assert out.tokens.tolist() == [[1, 9], [9, 8]] and out.lengths.tolist() == [1, 0]
