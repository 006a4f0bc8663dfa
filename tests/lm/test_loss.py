"""The stage LM's losses: full softmax and each target's own range (segue.lm.loss)."""

import torch
import torch.nn.functional as F

from segue.lm.config import LMConfig, StageConfig
from segue.lm.data import IGNORE
from segue.lm.layout import layout_for
from segue.lm.loss import level_ranges, range_loss, sliced_loss, token_loss
from segue.lm.model import Transformer

V, D = 12, 6
RANGES = [(0, 4), (4, 8)]  # two "levels"; 8 = EOS, 9.. = other specials


def _case(seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 5, D, generator=g)
    weight = torch.randn(V, D, generator=g)
    target = torch.tensor([[1, 5, IGNORE, 2, 8], [7, 0, 3, IGNORE, 6]])
    return hidden, weight, target


def test_range_loss_is_the_softmax_over_each_targets_own_range():
    hidden, weight, target = _case()
    out = range_loss(hidden, weight, target, RANGES)
    logits = hidden @ weight.t()
    terms, hits = [], 0
    for b, t in zip(*torch.nonzero((target >= 0) & (target < 8), as_tuple=True)):
        want = int(target[b, t])
        lo, hi = next(r for r in RANGES if r[0] <= want < r[1])
        row = logits[b, t, lo:hi]
        terms.append(-F.log_softmax(row, -1)[want - lo])
        hits += int(row.argmax()) == want - lo
    assert int(out.count) == len(terms) == 7  # IGNORE and EOS (8, in no range) left out
    torch.testing.assert_close(out.loss, torch.stack(terms).mean())
    assert int(out.correct) == hits
    sliced = sliced_loss(logits, target, RANGES)  # the same, from logits already computed
    torch.testing.assert_close(sliced.loss, out.loss)
    assert (int(sliced.correct), int(sliced.count)) == (int(out.correct), int(out.count))
    kept = target.masked_fill(target == 8, IGNORE)
    full = range_loss(hidden, weight, kept, [(0, V)])  # one range = the whole vocabulary
    torch.testing.assert_close(full.loss, token_loss(logits, kept).loss)


def test_range_loss_is_below_the_full_one_and_keeps_a_graph_when_empty():
    hidden, weight, target = _case(1)
    kept = target.masked_fill(target == 8, IGNORE)
    full = token_loss(hidden @ weight.t(), kept).loss
    assert range_loss(hidden, weight, kept, RANGES).loss < full
    weight.requires_grad_(True)
    empty = range_loss(hidden, weight, torch.full_like(target, IGNORE), RANGES)
    assert int(empty.count) == 0 and float(empty.loss.detach()) == 0.0
    empty.loss.backward()  # no target in any range: a zero loss that still backpropagates


def test_the_model_computes_either_loss_in_its_forward():
    torch.manual_seed(0)
    model = Transformer(LMConfig(vocab_size=V, max_seq_len=8, n_layer=1, n_head=2, d_model=8))
    ids = torch.randint(0, 8, (2, 5))
    _, _, target = _case()
    seen = []
    model.norm.register_forward_hook(lambda module, args, out: seen.append(out))
    logits = model(ids)
    torch.testing.assert_close(model(ids, target).loss, token_loss(logits, target).loss)
    out = model(ids, target, RANGES)
    expected = range_loss(seen[-1], model.head.weight, target, RANGES)
    torch.testing.assert_close(out.loss, expected.loss)
    assert int(out.count) == 7 and out.loss.requires_grad
    out.loss.backward()
    assert model.head.weight.grad[8:].abs().sum() == 0  # EOS and specials: not in the loss
    assert model.head.weight.grad[:8].abs().sum() > 0


def test_level_ranges_are_each_stages_sampling_ranges_in_id_order():
    stage = StageConfig(stage="fine", acoustic_vocab=8, n_coarse=2, n_levels=4,
                        window_seconds=0.2, prompt_seconds=0.1)  # fmt: skip
    fine = layout_for(stage)
    assert level_ranges(fine) == [(16, 24), (24, 32)]  # levels 2 and 3 of 8 codes each
    semantic = layout_for(StageConfig(stage="semantic", semantic_vocab=5, window_seconds=0.4,
                                        prompt_seconds=0.2))
    assert level_ranges(semantic) == [(0, semantic.eos + 1)]  # codes and EOS
