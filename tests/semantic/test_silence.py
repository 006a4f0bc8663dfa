"""The silence gate: frames far below the loudest get the token of digital silence, so a noise
floor around a word no longer changes its tokens; saved with the tokenizer, set from the CLI."""

import json

import numpy as np
import pytest
import torch

from segue import cli
from segue.data.manifest import read_manifest
from segue.semantic.extractors import MFCCExtractor
from segue.semantic.fit import fit_tokenizer
from segue.semantic.metrics import dedup
from segue.semantic.tokenizer import SilenceGate, load_tokenizer, quiet_frames
from tests.semantic.conftest import utterance


def test_quiet_frames_are_relative_to_the_loudest():
    hop = 640
    audio = torch.zeros(2, 20 * hop)
    audio[:, : 10 * hop] = 0.5 * torch.sin(torch.arange(10 * hop) * 0.2)  # ~ -9 dB
    audio[:, 10 * hop :] = 0.003 * torch.randn(10 * hop)  # ~ -50 dB: 41 dB down
    quiet = quiet_frames(audio, torch.tensor([20, 15]), hop, 20, db=35.0)
    assert not quiet[:, :10].any() and quiet[0, 10:].all()
    assert quiet[1, 10:15].all() and not quiet[1, 15:].any()  # padding is never "quiet"
    assert not quiet_frames(audio, torch.tensor([20, 20]), hop, 20, db=45.0).any()
    louder = audio * 100  # relative to the loudest frame: the level does not matter
    assert torch.equal(quiet_frames(louder, torch.tensor([20, 15]), hop, 20, db=35.0), quiet)


def test_a_noise_floor_around_a_word_stops_changing_its_tokens(corpus, tmp_path):
    train = read_manifest(corpus, split="train")
    tokenizer = fit_tokenizer(MFCCExtractor(), train, 16, seed=0, niter=10, progress=False)
    word = utterance(3, 1, 1.0)
    rng = np.random.default_rng(0)
    noise = lambda seconds: 0.002 * rng.standard_normal(int(16000 * seconds))  # noqa: E731
    # the same word in a quiet take and in a take with 1 s of (different) room noise each side
    quiet_take = np.concatenate([np.zeros(6400), word, np.zeros(6400)]).astype(np.float32)
    noisy_take = np.concatenate([noise(1.0), word, noise(1.0)]).astype(np.float32)
    plain = [dedup(tokenizer.tokenize(x)[0].numpy()) for x in (quiet_take, noisy_take)]
    assert len(plain[1]) > len(plain[0]) + 3  # the noise floor spells extra tokens

    tokenizer.with_silence_gate(35.0)
    silence = tokenizer.silence.token
    assert tokenizer.tokenize(torch.zeros(16000))[0].eq(silence).all()
    gated = [tokenizer.tokenize(x)[0].numpy() for x in (quiet_take, noisy_take)]
    assert gated[1][:25].tolist() == [silence] * 25 and gated[1][-25:].tolist() == [silence] * 25
    # the word itself: the same tokens but at its first frame (whose window sees the noise)
    assert np.array_equal(gated[1][26:-25], gated[0][11:-10])
    # the gate travels with the folder; None removes it
    path = tokenizer.save(tmp_path / "gated")
    assert json.loads((path / "tokenizer.json").read_text())["silence"] == {
        "db": 35.0, "token": silence}
    loaded = load_tokenizer(path)
    assert loaded.silence == SilenceGate(35.0, silence)
    assert torch.equal(loaded.tokenize(noisy_take), torch.from_numpy(gated[1])[None])
    assert loaded.with_silence_gate(None).silence is None
    with pytest.raises(ValueError, match="db must be > 0"):
        SilenceGate(0.0, 1)
    with pytest.raises(ValueError, match="outside the 16 clusters"):
        type(tokenizer)(tokenizer.extractor, tokenizer.codebook, None, SilenceGate(30.0, 16))


def test_fit_kmeans_and_eval_take_a_silence_gate(corpus, tmp_path, capsys, monkeypatch):
    def semantic(*argv):
        args = cli.parse(["semantic", *argv])
        args.func(args)

    out = tmp_path / "mfcc"
    semantic("fit-kmeans", str(corpus), "--model", "mfcc", "--k", "8",
             "--out", str(out), "--silence-db", "30")
    assert load_tokenizer(out).silence.db == 30.0
    assert "silence gate 30 dB" in capsys.readouterr().out
    semantic("eval", str(corpus), "--model", f"m={out}", "--mfcc-k", "8",
             "--silence-db", "40", "--json", str(tmp_path / "r.json"))
    assert set(json.loads((tmp_path / "r.json").read_text())["tokenizers"]) == {
        "m", "mfcc-k8", "mfcc-cmn-k8"}
    with pytest.raises(SystemExit):
        semantic("eval", str(corpus), "--model", str(out), "--silence-db", "-3")
    # `off` takes the saved gate away (for every tokenizer); left out, each keeps its own.
    from segue.commands import semantic as commands

    assert cli.parse(["semantic", "eval", str(corpus), "--silence-db", "off"]).silence_db is None
    assert cli.parse(["semantic", "eval", str(corpus)]).silence_db is commands.AS_SAVED
    seen = []
    real = type(load_tokenizer(out)).with_silence_gate

    def spy(self, db):
        seen.append(db)
        return real(self, db)

    monkeypatch.setattr(type(load_tokenizer(out)), "with_silence_gate", spy)
    semantic("eval", str(corpus), "--model", f"m={out}", "--mfcc-k", "0", "--silence-db", "off")
    assert seen == [None]
