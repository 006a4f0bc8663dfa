"""Linguistic probes: phonemes and Wuggy-style non-words, the sBLIMP-style templates, the
ZeroSpeech 2021 layout reader, scoring and accuracies, the sanity checks that make the harness
trustworthy (an LM that heard every word and no non-word scores ~100 %, a random LM ~50 %),
`segue eval probes`, and (with espeak-ng) building small sets."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from segue import cli
from segue.eval.probes import (
    PHENOMENA,
    NonwordRules,
    Phonotactics,
    ProbeReport,
    ProbeScorer,
    Pronunciation,
    accuracy,
    evaluate_probes,
    evaluate_set,
    make_nonwords,
    make_syntax_pairs,
    read_probe_set,
)
from segue.eval.probes.phonemes import changes_for, is_vowel
from segue.eval.probes.sets import write_gold
from segue.eval.probes.syntax import TEMPLATES, words_of
from segue.lm.config import StageConfig
from segue.lm.stages import StageLM
from tests.conftest import write

RATE = 16000
HOP = 640  # samples per token (25 Hz)
#: "Phones" of the tone language: one pure tone each, on a 25 Hz FFT bin.
FREQS = np.array([300.0 + 100.0 * k for k in range(12)])
SILENCE = len(FREQS)


class ToneTokenizer:
    """A stand-in semantic tokenizer: a 40 ms frame's strongest tone -> its index; quiet frames
    -> SILENCE. Each phone of `say` lasts two frames, so a word's tokens are known exactly."""

    sample_rate = RATE
    frame_rate = RATE / HOP

    def tokenize(self, audio: torch.Tensor) -> torch.Tensor:
        x = audio[0].numpy()
        n = len(x) // HOP
        frames = x[: n * HOP].reshape(n, HOP)
        peak = np.abs(np.fft.rfft(frames, axis=1)).argmax(axis=1) * RATE / HOP
        tokens = np.abs(peak[:, None] - FREQS[None]).argmin(axis=1)
        quiet = np.sqrt((frames**2).mean(axis=1)) < 1e-3
        return torch.from_numpy(np.where(quiet, SILENCE, tokens))[None]


def say(phones) -> np.ndarray:
    """A word of tone phones [n] -> audio: a silent frame, two frames per phone, a silent one."""
    t = np.arange(2 * HOP) / RATE
    parts = [np.zeros(HOP)] + [0.5 * np.sin(2 * np.pi * FREQS[p] * t) for p in phones]
    return np.concatenate([*parts, np.zeros(HOP)]).astype(np.float32)


def tone_words(n: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """n (word, non-word) pairs of 3-6 phones; the non-word has 1-2 phones replaced."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        word = [int(p) for p in rng.integers(0, len(FREQS), int(rng.integers(3, 7)))]
        fake = list(word)
        for i in rng.choice(len(word), 1 + (len(word) > 4), replace=False):
            fake[i] = int((fake[i] + rng.integers(1, len(FREQS))) % len(FREQS))
        pairs.append((word, fake))
    return pairs


def semantic_stage(vocab: int = SILENCE + 1) -> StageConfig:
    """A 2 s semantic context (50 tokens) that slides keeping 1 s."""
    return StageConfig("semantic", window_seconds=2.0, prompt_seconds=1.0, semantic_vocab=vocab)


def small_lm(seed: int) -> StageLM:
    return StageLM.random(
        semantic_stage(), "tiny", seed=seed, n_layer=2, n_head=2, n_kv_head=1, d_model=64,
        dropout=0.0,
    )  # fmt: skip


def train_lm(sequences: list[torch.Tensor], steps: int = 150, seed: int = 0) -> StageLM:
    """An LM that has heard `sequences` (token ids [n] each, one file each) many times."""
    lm = small_lm(seed)
    layout, model = lm.layout, lm.model
    rows = [layout.sequence(s, bos=True, eos=True) for s in sequences]
    width = max(len(r) for r in rows)
    batch = torch.full((len(rows), width), layout.pad)
    for i, r in enumerate(rows):
        batch[i, : len(r)] = r
    inputs, targets = batch[:, :-1], batch[:, 1:].masked_fill(batch[:, 1:] == layout.pad, -100)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(seed)
    model.train()
    for _ in range(steps):
        logits = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return lm


def lexical_set(root: Path, pairs, voices=("v1", "v2")) -> Path:
    """ROOT/lexical/dev in the official layout: each pair said by every voice, the official
    column order, rows of one id together."""
    folder = root / "lexical" / "dev"
    lines = ["filename,word,phones,id,voice,frequency,length,correct"]
    for n, (word, fake) in enumerate(pairs):
        for voice in voices:
            for kind, phones, correct in (("w", word, 1), ("n", fake, 0)):
                name = f"{kind}{n:03d}{voice}"
                write(folder / f"{name}.wav", say(phones))
                text = "-".join(map(str, phones))
                lines.append(f"{name},{text},{text},{n},{voice},{10 * n},{len(phones)},{correct}")
    (folder / "gold.csv").write_text("\n".join(lines) + "\n")
    return folder


def syntactic_set(root: Path, pairs, types=("agreement", "islands")) -> Path:
    """ROOT/syntactic/dev in the official layout, pairs spread over `types`."""
    folder = root / "syntactic" / "dev"
    lines = ["filename,id,voice,type,subtype,correct,transcription"]
    for n, (good, bad) in enumerate(pairs):
        kind = types[n % len(types)]
        for name, phones, correct in ((f"s{n:03d}g", good, 1), (f"s{n:03d}b", bad, 0)):
            write(folder / f"{name}.wav", say(phones))
            lines.append(f"{name},{n},v1,{kind},{kind}_a,{correct},sentence {n}")
    (folder / "gold.csv").write_text("\n".join(lines) + "\n")
    return folder


# ------------------------------------------------------------------------- phonemes, non-words


def test_pronunciations_parse_espeak_output_and_make_phoneme_input():
    p = Pronunciation.parse("h_@_l_'oU")
    assert p.phones == ("h", "@", "l", "oU") and p.stress == ("", "", "", "'")
    assert p.espeak() == "[[h@l'oU]]" and str(p) == "h @ l 'oU" and p.key == "h @ l oU"
    assert p.shape == (False, True, False, True)
    assert Pronunciation.parse("s_t_r_'E_N_T").phones[-1] == "T"
    assert Pronunciation.parse(",a_b_s_'i:_;_I_z") is None  # a hiatus mark
    assert Pronunciation.parse("h_@_l_'oU w_'3:_l_d") is None  # two words
    assert Pronunciation.parse("'t_a") is None  # stress on a consonant
    assert Pronunciation.parse("") is None
    assert all(is_vowel(v) for v in ("@", "3:", "aI", "@L", "0", "V", "i@3"))
    assert not any(is_vowel(c) for c in ("t#", "dZ", "N", "r-", "T"))


def fake_lexicon(n: int = 600, seed: int = 0) -> list[Pronunciation]:
    """Words of an invented language: (C)(C)V(C) syllables, a stressed first vowel."""
    rng = np.random.default_rng(seed)
    onsets = ["p", "t", "k", "s", "m", "n", "l", "b", "d", "st", "pl", "tr"]
    vowels, codas = ["a", "i", "u", "e", "o", "aI"], ["", "n", "s", "t", "k", "m"]
    words = set()
    while len(words) < n:
        syllables = []
        for _ in range(int(rng.integers(1, 4))):
            onset = list(onsets[int(rng.integers(len(onsets)))])
            if len(onset) == 2 and onset[1] in "tlr":
                onset = [onset[0], onset[1]]
            else:
                onset = ["".join(onset)]
            coda = codas[int(rng.integers(len(codas)))]
            syllables.append(
                [*onset, vowels[int(rng.integers(len(vowels)))], *([coda] * bool(coda))]
            )
        phones = tuple(p for s in syllables for p in s)
        words.add(phones)
    out = []
    for phones in sorted(words):
        first = next(i for i, p in enumerate(phones) if is_vowel(p))
        out.append(
            Pronunciation(phones, tuple("'" if i == first else "" for i in range(len(phones))))
        )
    return out


def test_nonwords_keep_length_syllables_and_stress_are_plausible_and_no_words():
    lexicon = fake_lexicon()
    stats = Phonotactics.from_lexicon(lexicon)
    known = {p.key for p in lexicon}
    rules = NonwordRules(min_phone=5)
    made = 0
    for k, word in enumerate(lexicon[:60]):
        fakes = make_nonwords(word, stats, known, np.random.default_rng(k), rules=rules)
        again = make_nonwords(word, stats, known, np.random.default_rng(k), rules=rules)
        assert fakes == again  # deterministic from the seed
        for fake in fakes:
            made += 1
            assert len(fake) == len(word) and fake.shape == word.shape
            assert fake.stress == word.stress
            changed = sum(a != b for a, b in zip(fake.phones, word.phones))
            assert changed == changes_for(len(word), rules)
            assert fake.key not in known
            assert stats.plausible(fake.phones, rules.min_trigram)
        assert len({f.key for f in fakes}) == len(fakes)
    assert made >= 100  # most words get several


def test_nonwords_need_attested_trigrams():
    word = Pronunciation(("p", "a", "t"), ("", "'", ""))
    stats = Phonotactics.from_lexicon([word, word])  # only one word: nothing else is attested
    assert make_nonwords(word, stats, {word.key}, np.random.default_rng(0)) == []


# ----------------------------------------------------------------------------- syntax pairs


def all_template_words() -> Counter:
    counts: Counter = Counter()
    for make in TEMPLATES.values():
        for fillings in make().values():
            for good, bad in fillings:
                counts.update(words_of(good) + words_of(bad))
    return counts


def test_syntax_pairs_cover_the_phenomena_and_differ_in_one_word():
    counts = all_template_words()
    pairs = make_syntax_pairs(1050, seed=0, counts=counts)
    assert len(pairs) == 1050 and len({(p.good, p.bad) for p in pairs}) == 1050
    by_type = Counter(p.type for p in pairs)
    assert set(by_type) == set(PHENOMENA) and len(by_type) >= 6
    assert min(by_type.values()) == 150
    for p in pairs:
        good, bad = words_of(p.good), words_of(p.bad)
        assert len(good) == len(bad) and sum(a != b for a, b in zip(good, bad)) == 1
        assert p.good[0].isupper() and p.good.endswith(".")
    assert make_syntax_pairs(1050, seed=0, counts=counts) == pairs
    assert make_syntax_pairs(1050, seed=1, counts=counts) != pairs
    few = make_syntax_pairs(10, seed=0, counts=counts)  # subtypes with no share get none
    assert len(few) == 10 and {p.type for p in few} == set(PHENOMENA)
    with pytest.raises(ValueError, match="at least one pair per phenomenon"):
        make_syntax_pairs(3, seed=0, counts=counts)


def test_syntax_pairs_use_only_corpus_words():
    counts = all_template_words()
    counts["wept"] = 0  # a word the texts never use: no pair may contain it
    pairs = make_syntax_pairs(140, seed=0, counts=counts)
    assert not any("wept" in words_of(p.good) + words_of(p.bad) for p in pairs)
    counts["themselves"] = 0  # the only plural anaphor: that subtype cannot be made
    with pytest.raises(ValueError, match="anaphor_agreement/number"):
        make_syntax_pairs(140, seed=0, counts=counts)


# ------------------------------------------------------------------------------- the reader


def test_reader_pairs_the_official_layout_by_id_and_voice(tmp_path):
    pairs = tone_words(3, seed=1)
    lexical_set(tmp_path, pairs)
    lexical = read_probe_set(tmp_path / "lexical" / "dev", "lexical")
    assert len(lexical.items) == 12 and len(lexical.pairs) == 6 and lexical.ids == ["0", "1", "2"]
    for pair in lexical.pairs:
        good, bad = lexical.items[pair.good], lexical.items[pair.bad]
        assert good.correct and not bad.correct
        assert good.id == bad.id == pair.id and good.voice == bad.voice
        assert good.path.is_file() and good.frequency == 10 * int(pair.id)
    syntactic_set(tmp_path, pairs)
    syntactic = read_probe_set(tmp_path / "syntactic" / "dev", "syntactic")
    assert len(syntactic.pairs) == 3
    assert [syntactic.items[p.good].type for p in syntactic.pairs] == [
        "agreement", "islands", "agreement"]  # fmt: skip
    assert len(lexical.subset(2, seed=0).ids) == 2 and lexical.subset(None) is lexical


def test_reader_refuses_broken_sets(tmp_path):
    folder = lexical_set(tmp_path, tone_words(2, seed=2))
    gold = (folder / "gold.csv").read_text()
    with pytest.raises(FileNotFoundError, match="no syntactic probe set"):
        read_probe_set(tmp_path / "syntactic" / "dev", "syntactic")
    (folder / "w000v1.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"w000v1\.wav"):
        read_probe_set(folder, "lexical")
    write(folder / "w000v1.wav", say([1, 2, 3]))
    (folder / "gold.csv").write_text(gold.replace(",correct", ",right"))
    with pytest.raises(ValueError, match="missing column"):
        read_probe_set(folder, "lexical")
    unbalanced = [line for line in gold.splitlines() if not line.startswith("n000")]
    unbalanced = [line for line in unbalanced if not line.startswith("n001v1")]
    (folder / "gold.csv").write_text("\n".join(unbalanced) + "\n")
    with pytest.raises(ValueError, match="correct and 0 incorrect"):
        read_probe_set(folder, "lexical")
    (folder / "gold.csv").unlink()
    with pytest.raises(FileNotFoundError, match="gold"):
        read_probe_set(folder, "lexical")


# --------------------------------------------------------------------- scoring, accuracies


def test_accuracy_and_its_bootstrap_interval():
    assert accuracy([1.0] * 50).low == 1.0
    half = accuracy([1.0, 0.0] * 100, seed=0)
    assert half.accuracy == 0.5 and half.low < 0.5 < half.high and half.ids == 200
    few = accuracy([1.0, 0.0] * 10, seed=0)
    assert few.high - few.low > half.high - half.low  # fewer ids, a wider interval
    assert accuracy([0.5, 1.0], bootstrap=0).low == 0.75
    with pytest.raises(ValueError, match="no pairs"):
        accuracy([])


def test_logprob_is_the_lm_likelihood_and_slides_past_the_window():
    lm = small_lm(seed=3)
    scorer = ProbeScorer(ToneTokenizer(), lm)
    tokens = torch.tensor([1, 5, 5, 2, 0, 7])
    ids = torch.cat([torch.tensor([lm.layout.bos]), tokens])
    with torch.no_grad():
        logits = lm.model(ids[None])[0, :-1, : lm.layout.eos + 1]
    expected = torch.log_softmax(logits, -1).gather(1, tokens[:, None]).sum()
    total, count = scorer.logprob(tokens)
    assert count == 6 and total == pytest.approx(float(expected), abs=1e-4)
    long = torch.randint(0, SILENCE, (130,), generator=torch.Generator().manual_seed(0))
    total, count = scorer.logprob(long)  # 130 tokens through a 50-token window
    assert count == 130 and np.isfinite(total) and total < 0
    with_eos = ProbeScorer(ToneTokenizer(), lm, eos=True)
    assert with_eos.logprob(long)[1] == 131 and with_eos.logprob(long)[0] < total
    with pytest.raises(ValueError, match="outside the LM's codes"):
        scorer.logprob(torch.tensor([SILENCE + 5]))


def test_scorer_refuses_unusable_audio(tmp_path):
    scorer = ProbeScorer(ToneTokenizer(), small_lm(seed=0))
    with pytest.raises(ValueError, match="empty"):
        scorer.tokens(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="silent"):
        scorer.tokens(np.zeros(RATE, np.float32))
    with pytest.raises(ValueError, match="too short"):
        scorer.tokens(say([1])[HOP : HOP + 100])
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        scorer.score_file(empty)
    coarse = StageLM.random(
        StageConfig("coarse", window_seconds=2.0, prompt_seconds=1.0, semantic_vocab=13,
                    acoustic_vocab=8, n_coarse=1, n_levels=2),
        "tiny", n_layer=1, d_model=32, n_head=2, n_kv_head=1,
    )  # fmt: skip
    with pytest.raises(ValueError, match="semantic LM"):
        ProbeScorer(ToneTokenizer(), coarse)


def test_groups_per_phenomenon(tmp_path):
    syntactic_set(tmp_path, tone_words(20, seed=4))
    probe_set = read_probe_set(tmp_path / "syntactic" / "dev", "syntactic")
    logp = np.zeros(len(probe_set.items))
    count = np.ones(len(probe_set.items), dtype=np.int64)
    for pair in probe_set.pairs:  # "agreement" right, "islands" wrong
        right = probe_set.items[pair.good].type == "agreement"
        logp[pair.good if right else pair.bad] = 1.0
    result = evaluate_set(probe_set, logp, count)
    assert result.summed.accuracy == 0.5 and result.group_by == "type"
    groups = {g.name: g.summed.accuracy for g in result.groups}
    assert groups == {"agreement": 1.0, "islands": 0.0}
    subtypes = {g.name: g.summed.accuracy for g in result.subtypes}
    assert subtypes == {"agreement/agreement_a": 1.0, "islands/islands_a": 0.0}
    assert "islands/islands_a (10)" in ProbeReport("m", False, 1000, 0, None, [result]).format()
    logp[:] = 0.0  # every pair a tie: 1/2 each
    assert evaluate_set(probe_set, logp, count).summed.accuracy == 0.5


# ----------------------------------------------------------------------------- sanity checks


@pytest.fixture(scope="module")
def heard_words():
    """60 (word, non-word) pairs and an LM trained on the words' tokens only."""
    pairs = tone_words(60, seed=0)
    tokenizer = ToneTokenizer()
    heard = [tokenizer.tokenize(torch.from_numpy(say(w))[None])[0] for w, _ in pairs]
    return pairs, train_lm(heard)


def test_an_lm_that_heard_every_word_and_no_non_word_scores_near_100(tmp_path, heard_words):
    pairs, lm = heard_words
    lexical_set(tmp_path, pairs, voices=("v1",))
    syntactic_set(tmp_path, pairs[:30])
    scorer = ProbeScorer(ToneTokenizer(), lm, name="trained")
    report = evaluate_probes(scorer, tmp_path, progress=False, submission=tmp_path / "sub")
    lexical, syntactic = report.results
    assert lexical.ids == 60 and lexical.summed.accuracy >= 0.95
    assert lexical.normalised.accuracy >= 0.95 and lexical.summed.low >= 0.85
    assert syntactic.summed.accuracy >= 0.9 and {g.name for g in syntactic.groups} == {
        "agreement", "islands"}  # fmt: skip
    lines = (tmp_path / "sub" / "lexical" / "dev.txt").read_text().splitlines()
    assert len(lines) == 120 and lines[0].startswith("w000v1 -")
    loaded = json.loads(report.to_json())
    assert loaded["results"][0]["summed"]["accuracy"] == lexical.summed.accuracy
    assert loaded["reference"]["lexical"]["AudioLM"] == 71.5


def test_a_random_lm_scores_near_chance(heard_words):
    scorer = ProbeScorer(ToneTokenizer(), small_lm(seed=7))
    tokenizer = ToneTokenizer()
    outcomes = []
    for word, fake in tone_words(400, seed=5):
        good, bad = (scorer.logprob(tokenizer.tokenize(torch.from_numpy(say(p))[None])[0])[0]
                     for p in (word, fake))  # fmt: skip
        outcomes.append(1.0 if good > bad else 0.5 if good == bad else 0.0)
    result = accuracy(outcomes, seed=0)
    assert 0.4 < result.accuracy < 0.6 and result.low < 0.5 < result.high
    _, trained = heard_words  # the trained LM on the same (unheard) pairs: chance as well
    scorer = ProbeScorer(ToneTokenizer(), trained)
    unheard = [
        scorer.logprob(tokenizer.tokenize(torch.from_numpy(say(w))[None])[0])[0]
        > scorer.logprob(tokenizer.tokenize(torch.from_numpy(say(f))[None])[0])[0]
        for w, f in tone_words(100, seed=6)
    ]
    assert 0.3 < np.mean(unheard) < 0.7


# ------------------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from tests.test_pipeline import tiny_audiolm

    return tiny_audiolm().save_pretrained(tmp_path_factory.mktemp("bundle") / "tiny")


def test_eval_probes_command(tmp_path, tiny_bundle, capsys):
    lexical_set(tmp_path, tone_words(4, seed=8))
    syntactic_set(tmp_path, tone_words(4, seed=9))
    out = tmp_path / "report.json"
    args = ["eval", "probes", str(tmp_path), "--model", str(tiny_bundle), "--threads", "1",
            "--quiet", "--out", str(out)]  # fmt: skip
    assert cli.main(args) == 0
    report = json.loads(out.read_text())
    assert [r["task"] for r in report["results"]] == ["lexical", "syntactic"]
    assert report["results"][0]["ids"] == 4 and report["model"] == str(tiny_bundle)
    assert "summed log-prob" in capsys.readouterr().out
    assert cli.main([*args[:3], "--syntax", *args[3:]]) == 0
    assert [r["task"] for r in json.loads(out.read_text())["results"]] == ["syntactic"]


def test_eval_probes_command_errors(tmp_path, tiny_bundle, capsys):
    lexical_set(tmp_path, tone_words(2, seed=8))
    partial = tmp_path / "partial"
    partial.mkdir()
    for part in ("codec", "semantic", "coarse_lm", "fine_lm", "bundle.json"):
        (partial / part).symlink_to(tiny_bundle / part)
    base = ["eval", "probes", str(tmp_path), "--lexical", "--quiet", "--threads", "1"]
    assert cli.main([*base, "--model", str(partial)]) == 2
    assert "no semantic LM (semantic_lm/)" in capsys.readouterr().err
    assert cli.main([*base, "--model", str(tiny_bundle), "--syntax"]) == 2
    assert "no syntactic probe set" in capsys.readouterr().err
    assert cli.main([*base, "--build-only"]) == 2
    assert "--build-only needs --build" in capsys.readouterr().err
    assert cli.main([*base, "--model", str(tiny_bundle), "--out", str(tmp_path / "r.txt")]) == 2
    assert "must end in .json" in capsys.readouterr().err


# ------------------------------------------------------------------- building, with espeak-ng

ESPEAK = shutil.which("espeak-ng")
WORDLIST = Path("/usr/share/dict/american-english")


@pytest.mark.skipif(ESPEAK is None or not WORDLIST.is_file(), reason="needs espeak-ng, wamerican")
def test_build_small_sets_spoken_by_held_out_voices(tmp_path, monkeypatch):
    from segue.data.speech import speaker_splits
    from segue.eval.probes import build_lexical, build_syntactic

    monkeypatch.setenv("SEGUE_CACHE_DIR", str(tmp_path / "cache"))
    words = [w for w in WORDLIST.read_text().split() if w.isalpha() and w.islower()][::100]
    counts = {w: 7 for w in words}
    root = tmp_path / "probes"
    built = build_lexical(root, n_pairs=6, counts=counts, wordlist=words, accents=("en-us",),
                          progress=False)  # fmt: skip
    assert (built.pairs, built.items, built.cached) == (6, 12, False)
    lexical = read_probe_set(root / "lexical" / "dev", "lexical")
    splits = speaker_splits()
    for pair in lexical.pairs:
        word, fake = lexical.items[pair.good], lexical.items[pair.bad]
        assert word.text in counts and fake.text.startswith("[[")
        assert splits[word.voice] != "train" and word.voice == fake.voice
        assert word.length == fake.length and word.frequency == 7
    again = build_lexical(root, n_pairs=6, counts=counts, wordlist=words, accents=("en-us",),
                          progress=False)  # fmt: skip
    assert again.cached and (root / "lexical" / "dev" / "gold.csv").read_text() == (
        root / "lexical" / "dev" / "gold.csv").read_text()  # fmt: skip
    built = build_syntactic(root, n_pairs=7, counts=all_template_words(), progress=False)
    syntactic = read_probe_set(root / "syntactic" / "dev", "syntactic")
    assert built.pairs == 7 and {i.type for i in syntactic.items} == set(PHENOMENA)
    from segue import audio as audio_io

    audio = audio_io.load(syntactic.items[0].path)
    assert audio.size > 0.5 * RATE and np.abs(audio).max() > 0.5
    official = tmp_path / "official"
    write_gold(official / "lexical" / "dev", "lexical", [])
    with pytest.raises(FileExistsError, match="did not build"):
        build_lexical(official, n_pairs=6, counts=counts, wordlist=words, progress=False)
