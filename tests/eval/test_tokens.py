"""`segue.eval.tokens`: mutual information between semantic tokens and acoustic codes by lag."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segue import cli
from segue.data.shards import TokenShards, TokenShardWriter, merge_index
from segue.errors import InputError
from segue.eval.tokens import plugin_information, token_information

K_S, K_A = 8, 16


def test_plugin_information_on_known_pairs():
    rng = np.random.default_rng(0)
    x = rng.integers(0, K_S, 20_000)
    assert math.isclose(plugin_information(x, x), math.log(K_S), rel_tol=0.01)  # x tells all
    assert plugin_information(x, rng.integers(0, K_A, x.size)) < 0.01  # independent: ~0 (bias)
    assert math.isclose(plugin_information(x, x // 2), math.log(K_S / 2), rel_tol=0.01)
    with pytest.raises(InputError, match="paired"):
        plugin_information(x, x[:-1])


def write_pair(root, delay: int, n_files: int = 30, seed: int = 0):
    """Random semantic tokens (25 Hz); acoustic level 0 (50 Hz) follows the token `delay` tokens
    earlier (2 frames per token), level 1 is noise."""
    rng = np.random.default_rng(seed)
    sem = TokenShardWriter(root / "semantic", kind="semantic", levels=1, vocab_size=K_S,
                           frame_rate=25.0)  # fmt: skip
    ac = TokenShardWriter(root / "acoustic", kind="acoustic", levels=2, vocab_size=K_A,
                          frame_rate=50.0)  # fmt: skip
    for i in range(n_files):
        tokens = rng.integers(0, K_S, 60)
        source = np.roll(np.repeat(tokens, 2), 2 * delay)
        codes = np.stack([(3 * source + 1) % K_A, rng.integers(0, K_A, source.size)])
        info = {"split": "valid" if i % 3 == 0 else "train", "duration": 2.4}
        sem.add(f"f{i:03d}.wav", tokens[None], info)
        ac.add(f"f{i:03d}.wav", codes, info)
    for writer in (sem, ac):
        writer.flush()
        merge_index(writer.out)
    return root / "semantic", root / "acoustic"


@pytest.mark.parametrize("delay", [0, 2])
def test_information_peaks_where_the_codes_follow_the_tokens(tmp_path, delay):
    semantic, acoustic = write_pair(tmp_path, delay)
    report = token_information(TokenShards(semantic), TokenShards(acoustic), max_lag=4)
    assert report.files == 30 and [row.lag for row in report.lags] == list(range(-4, 5))
    peak = max(report.lags, key=lambda row: row.excess)
    assert peak.lag == delay  # the code at token t + lag follows token t + lag - delay
    assert math.isclose(peak.information, math.log(K_S), rel_tol=0.02)
    others = [row.excess for row in report.lags if row.lag != delay]
    assert max(others) < 0.05 and abs(report.far) < 0.05
    assert (report.aligned > 1.5) == (delay == 0)
    noise = token_information(TokenShards(semantic), TokenShards(acoustic), level=1, max_lag=1)
    assert abs(noise.aligned) < 0.05  # the shuffled estimate takes the plug-in bias away
    valid = token_information(TokenShards(semantic, "valid"), TokenShards(acoustic, "valid"))
    assert valid.files == 10
    with pytest.raises(InputError, match="level 2"):
        token_information(TokenShards(semantic), TokenShards(acoustic), level=2)


def test_eval_tokens_command(tmp_path, capsys):
    semantic, acoustic = write_pair(tmp_path, 0)
    out = tmp_path / "mi.json"
    argv = ["eval", "tokens", str(acoustic), str(semantic), "--lags", "2", "--json", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "aligned (lag 0)" in printed and "10 files" in printed  # the valid split by default
    report = json.loads(out.read_text())
    assert [row["lag"] for row in report["lags"]] == [-2, -1, 0, 1, 2]
    assert math.isclose(report["aligned"], report["lags"][2]["excess"])
    assert cli.main(["eval", "tokens", str(semantic), "--json", str(out)]) == 2
    assert "a semantic and an acoustic" in capsys.readouterr().err
    assert cli.main(["eval", "tokens", str(semantic), str(acoustic), "--json", "x.txt"]) == 2
