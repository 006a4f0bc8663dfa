"""Fixtures of the LM tests: synthetic shards; one torch thread (the models are tiny, and
several OpenMP threads on a busy machine make small kernels orders of magnitude slower)."""

from __future__ import annotations

import pytest
import torch

from tests.lm.synthetic import write_shards


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shards(tmp_path_factory):
    """(semantic, acoustic) shard folders with a learnable structure."""
    return write_shards(tmp_path_factory.mktemp("lm_shards"))
