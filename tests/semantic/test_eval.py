"""The eval on a tiny synthetic set: pairs/triplets, known distances, the table."""

import numpy as np
import pytest
import torch

from segue.data.manifest import read_manifest
from segue.semantic.eval import CodecLevelTokenizer, build_eval_set, evaluate, format_table


class ScriptedTokenizer:
    """Tokens chosen by (sentence, voice), looked up from the audio's length and first sample."""

    sample_rate, frame_rate, vocab_size = 16000, 25.0, 10

    def __init__(self, table):
        self.table = table

    def tokenize(self, audio):
        key = (audio.shape[-1], round(float(audio[:200].abs().sum()), 2))
        return torch.tensor([self.table[key]])


def test_eval_set_pairs_and_triplets(corpus):
    test = read_manifest(corpus, split="test")
    eval_set = build_eval_set(test)
    assert eval_set.sentences == 3 and len(eval_set.entries) == 9
    assert len(eval_set.pairs) == 9  # 3 sentences x 3 voice pairs
    for a, x in eval_set.pairs:
        ea, ex = eval_set.entries[a], eval_set.entries[x]
        assert ea.extra["sentence_id"] == ex.extra["sentence_id"] and ea.group != ex.group
    for _a, x, b in eval_set.triplets:
        ex, eb = eval_set.entries[x], eval_set.entries[b]
        assert eb.group == ex.group and eb.extra["sentence_id"] != ex.extra["sentence_id"]
    assert build_eval_set(test, max_sentences=2).sentences == 2
    # every B: the 2 other sentences of X's voice for each of the 9 pairs
    every = build_eval_set(test, b_per_pair=0)

    def paths(s, rows):
        return {tuple(s.entries[i].path for i in row) for row in rows}

    assert len(every.triplets) == 18
    assert paths(every, every.pairs) == paths(eval_set, eval_set.pairs)
    assert paths(eval_set, eval_set.triplets) <= paths(every, every.triplets)
    assert len(build_eval_set(test, b_per_pair=2).triplets) == 18
    with pytest.raises(ValueError, match="b_per_pair"):
        build_eval_set(test, b_per_pair=-1)
    with pytest.raises(ValueError, match="sentence_id"):
        build_eval_set(read_manifest(corpus, split="valid"))


def test_known_distances_give_known_scores(corpus):
    from segue import audio as audio_io

    test = read_manifest(corpus, split="test")
    table, invariant, voice_bound, voice_of = {}, {}, {}, {}
    for entry in test.entries:
        audio = torch.from_numpy(audio_io.load(test.resolve(entry), 16000))
        key = (audio.shape[-1], round(float(audio[:200].abs().sum()), 2))
        sentence = int(entry.extra["sentence_id"][1:]) - 20
        voice = int(entry.group[1:]) - 4
        # invariant: the sentence's tokens, repeated (dedup removes the repeats)
        invariant[key] = [sentence, sentence, sentence + 3, sentence + 6, sentence + 6]
        # voice-bound: the voice's tokens only
        voice_bound[key] = [voice, voice + 3, voice + 6]
        voice_of[key] = voice
    report = evaluate(
        {"invariant": ScriptedTokenizer(invariant), "voice": ScriptedTokenizer(voice_bound)},
        test,
        progress=False,
    )
    good, bad = report["tokenizers"]["invariant"], report["tokenizers"]["voice"]
    assert good["same_ned"] == 0.0 and good["diff_ned"] == 1.0 and good["abx_error"] == 0.0
    assert bad["same_ned"] == 1.0 and bad["abx_error"] == 1.0
    assert good["abx_error_se"] == 0.0 and bad["abx_error_se"] == 0.0  # no spread over pairs
    # invariant except sentence 0, whose utterances get tokens of their own: its 3 pairs tie
    # with every B (error 1/2), the 6 others never err; 18 triplets -> 3/18, se 0.25 / 3
    odd = {key: invariant[key] if invariant[key][0] != 0 else [3 * voice_of[key]]
           for key in invariant}
    row = evaluate({"odd": ScriptedTokenizer(odd)}, test, b_per_pair=0,
                   progress=False)["tokenizers"]["odd"]
    assert row["abx_error"] == pytest.approx(3 / 18)
    assert row["abx_error_se"] == pytest.approx(0.25 / 3)
    seconds = report["seconds"]
    assert good["rate"] == pytest.approx(9 * 3 / seconds)
    table = format_table(report)
    assert "invariant" in table and "ABX" in table and "9 utterances" in table


def test_codec_level_tokenizer():
    class FakeCodec:
        sample_rate, frame_rate, codebook_size = 16000, 50.0, 16

        def encode(self, audio):
            frames = audio.shape[-1] // 320
            return torch.arange(2 * frames).view(1, 2, frames).expand(audio.shape[0], 2, frames)

    tokenizer = CodecLevelTokenizer(FakeCodec())
    tokens = tokenizer.tokenize(np.zeros(3200, np.float32))
    assert tokens.tolist() == [list(range(10))] and tokenizer.vocab_size == 16
