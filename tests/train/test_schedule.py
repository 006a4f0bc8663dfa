"""Warm-up + cosine schedule shape."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from segue.train.schedule import WarmupCosine, build_scheduler


def test_shape():
    f = WarmupCosine(warmup_steps=10, total_steps=110, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(4) == pytest.approx(0.5)
    assert f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55)  # half way down the cosine: (1 + min) / 2
    assert f(110) == pytest.approx(0.1) and f(10_000) == pytest.approx(0.1)
    values = [f(k) for k in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(values))  # monotone after the warm-up
    assert f(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))


def test_no_warmup_starts_at_peak():
    assert WarmupCosine(0, 100, 0.0)(0) == 1.0


def test_lambda_lr_steps_and_state():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=2.0)
    scheduler = build_scheduler(optimizer, 2, 10, 0.1)
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:3] == pytest.approx([1.0, 2.0, 2.0])
    state = scheduler.state_dict()
    assert state["last_epoch"] == 4 and state["lr_lambdas"][0]["total_steps"] == 10
