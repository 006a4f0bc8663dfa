"""Fixtures of the LM tests: synthetic shards; one torch thread (the models are tiny, and
several OpenMP threads on a busy machine make small kernels orders of magnitude slower)."""

from __future__ import annotations

import pytest

from tests.lm.synthetic import write_shards


@pytest.fixture(scope="session")
def shards(tmp_path_factory):
    """(semantic, acoustic) shard folders with a learnable structure."""
    return write_shards(tmp_path_factory.mktemp("lm_shards"))
