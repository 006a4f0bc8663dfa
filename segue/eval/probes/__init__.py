"""Linguistic probes as in the AudioLM paper (ZeroSpeech 2021's sWUGGY and sBLIMP): does the
semantic LM give a spoken word a higher likelihood than a matched non-word, and a grammatical
sentence a higher one than a minimally different ungrammatical one? See docs/probes.md.

    build_lexical("runs/probes"); build_syntactic("runs/probes")   # segue's own sets, cached
    scorer = ProbeScorer.from_bundle("segue/assets/speech-tiny")
    report = evaluate_probes(scorer, "runs/probes")                 # or the official dataset root

Modules: `phonemes` (espeak-ng phonemes, Wuggy-style non-words), `lexical` and `syntax` (the
pairs), `build` (spoken by held-out voices, on disk), `sets` (the ZeroSpeech 2021 layout, read
for both), `score` (log-probabilities, accuracies with bootstrap intervals, the report).
"""

from segue.eval.probes.build import (
    BuildSummary,
    build_lexical,
    build_syntactic,
    held_out_voices,
)
from segue.eval.probes.lexical import LexicalPair, make_lexical_pairs
from segue.eval.probes.phonemes import NonwordRules, Phonotactics, Pronunciation, make_nonwords
from segue.eval.probes.score import (
    REFERENCE,
    Accuracy,
    GroupResult,
    ProbeReport,
    ProbeResult,
    ProbeScorer,
    accuracy,
    evaluate_probes,
    evaluate_set,
    score_set,
)
from segue.eval.probes.sets import TASKS, ProbeItem, ProbePair, ProbeSet, read_probe_set
from segue.eval.probes.syntax import PHENOMENA, SyntaxPair, make_syntax_pairs

__all__ = [
    "PHENOMENA",
    "REFERENCE",
    "TASKS",
    "Accuracy",
    "BuildSummary",
    "GroupResult",
    "LexicalPair",
    "NonwordRules",
    "Phonotactics",
    "ProbeItem",
    "ProbePair",
    "ProbeReport",
    "ProbeResult",
    "ProbeScorer",
    "ProbeSet",
    "Pronunciation",
    "SyntaxPair",
    "accuracy",
    "build_lexical",
    "build_syntactic",
    "evaluate_probes",
    "evaluate_set",
    "held_out_voices",
    "make_lexical_pairs",
    "make_nonwords",
    "make_syntax_pairs",
    "read_probe_set",
    "score_set",
]
