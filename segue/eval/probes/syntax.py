"""sBLIMP-style minimal pairs: a grammatical sentence and one that differs from it in one word
(two for a swapped determiner or licensor), generated from templates over seven BLiMP phenomena
(Warstadt et al. 2020), with the vocabulary of the speech corpus's texts.

    pairs = make_syntax_pairs(1050, seed=0, counts=corpus_word_counts())
    pairs[0]   # SyntaxPair("subject_verb_agreement", "singular", "The king is in the city.",
               #            "The king are in the city.")

Phenomena (BLiMP's names, as sBLIMP's `type` column) and their subtypes:

| type | subtype | grammatical | ungrammatical |
| --- | --- | --- | --- |
| subject_verb_agreement | singular | The king is in the city. | The king are in the city. |
| | plural | The kings were in the field. | The kings was in the field. |
| | attractor | The son of the kings was glad. | The son of the kings were glad. |
| determiner_noun_agreement | singular | The man found this sword. | The man found these sword. |
| | plural | The man found those swords. | The man found that swords. |
| anaphor_agreement | gender | The queen hid herself. | The queen hid himself. |
| | number | The priests washed themselves. | The priests washed himself. |
| irregular_forms | past | The man broke the cup. | The man broken the cup. |
| | participle | The man had broken the cup. | The man had broke the cup. |
| argument_structure | transitive | The man found the ring. | The man slept the ring. |
| | intransitive | The man slept at night. | The man found at night. |
| npi_licensing | no | No man had ever seen the city. | The man had ever seen the city. |
| | not | The man had not ever seen the city. | The man had often ever seen the city. |
| filler_gap_dependency | gap | We knew what the man took. | We knew that the man took. |
| | no_gap | I know that the man took the ring. | I know what the man took the ring. |

Gap sentences end in a time ("yesterday", "at night", ...). Most subtypes come in pairs that
swap which sentence holds the more frequent word (`no` and `not`, `this` and `these`, singular
and plural, past and participle), so that word frequency alone does not decide a phenomenon.
Every word of both sentences must occur in the corpus texts (`counts`, at least `min_count`
times); the templates' vocabulary is biblical and everyday English that the King James Bible
and the fortunes files use. The pairs of each subtype are drawn without repeats from all
fillings of its template, in an order set by the seed, skipping those with a word the texts
lack.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from segue.errors import InputError

#: BLiMP phenomena covered, in the order pairs are numbered.
PHENOMENA = (
    "subject_verb_agreement",
    "determiner_noun_agreement",
    "anaphor_agreement",
    "irregular_forms",
    "argument_structure",
    "npi_licensing",
    "filler_gap_dependency",
)


@dataclass(frozen=True)
class SyntaxPair:
    """A grammatical sentence and its ungrammatical minimal counterpart."""

    type: str
    subtype: str
    good: str
    bad: str


# ------------------------------------------------------------------------------ vocabulary

#: People: (singular, plural, gender "m" / "f" / "" when either).
PEOPLE = (
    ("man", "men", "m"), ("woman", "women", "f"), ("king", "kings", "m"),
    ("queen", "queens", "f"), ("child", "children", ""), ("servant", "servants", ""),
    ("son", "sons", "m"), ("daughter", "daughters", "f"), ("brother", "brothers", "m"),
    ("sister", "sisters", "f"), ("father", "fathers", "m"), ("mother", "mothers", "f"),
    ("prince", "princes", "m"), ("priest", "priests", ""), ("prophet", "prophets", ""),
    ("soldier", "soldiers", ""), ("shepherd", "shepherds", ""), ("friend", "friends", ""),
    ("stranger", "strangers", ""), ("judge", "judges", ""), ("boy", "boys", "m"),
    ("girl", "girls", "f"), ("wife", "wives", "f"), ("husband", "husbands", "m"),
    ("widow", "widows", "f"), ("teacher", "teachers", ""), ("doctor", "doctors", ""),
)  # fmt: skip
#: Things: (singular, plural).
THINGS = (
    ("book", "books"), ("letter", "letters"), ("stone", "stones"), ("cup", "cups"),
    ("sword", "swords"), ("lamb", "lambs"), ("house", "houses"), ("city", "cities"),
    ("door", "doors"), ("horse", "horses"), ("tree", "trees"), ("ship", "ships"),
    ("gift", "gifts"), ("field", "fields"), ("ring", "rings"), ("coat", "coats"),
    ("garment", "garments"), ("table", "tables"), ("bird", "birds"), ("goat", "goats"),
    ("camel", "camels"), ("basket", "baskets"),
)  # fmt: skip
#: What follows "is" / "was": places and states.
COMPLEMENTS = (
    "in the city", "in the field", "at the gate", "in the temple", "in the house",
    "on the hill", "in the garden", "here", "there", "ready", "afraid", "glad",
)  # fmt: skip
#: Present verbs: (third person singular, plural), with what may follow them.
PRESENT = (
    ("works", "work"), ("comes", "come"), ("goes", "go"), ("lives", "live"), ("eats", "eat"),
    ("laughs", "laugh"), ("sits", "sit"), ("runs", "run"), ("speaks", "speak"), ("cries", "cry"),
    ("rests", "rest"), ("stands", "stand"),
)  # fmt: skip
PRESENT_AFTER = ("in the city", "in the field", "at the gate", "in the house", "at night",
                 "in the morning", "in the garden")  # fmt: skip
#: Verbs in the past that must take an object (none reads well without one).
TRANSITIVE = ("found", "took", "brought", "carried", "destroyed", "covered", "wanted", "made",
              "touched")  # fmt: skip
#: Verbs that take no object (none of them read as "verb + particle" before an adjunct).
INTRANSITIVE = ("slept", "died", "wept", "fell", "laughed", "fainted", "rested", "trembled",
                "perished", "rejoiced", "smiled", "arrived")  # fmt: skip
#: Time adjuncts (no preposition a transitive verb could take as a particle).
TIMES = ("yesterday", "at night", "in the morning", "in the evening")
#: Verbs of the anaphor pairs.
REFLEXIVE = ("hid", "hurt", "washed", "blessed", "humbled", "prepared", "comforted", "cut",
             "covered", "saw", "loved", "killed", "praised")  # fmt: skip
REFLEXIVE_AFTER = ("", " in the house", " in the field", " in the city", " at night")
#: Irregular verbs: (past, participle, objects that make sense).
IRREGULAR = (
    ("took", "taken", ("sword", "cup", "ring", "book", "lamb", "coat")),
    ("wrote", "written", ("letter", "book", "word", "song")),
    ("ate", "eaten", ("bread", "fruit", "lamb")),
    ("saw", "seen", ("city", "temple", "king", "field", "ship", "house")),
    ("gave", "given", ("gift", "ring", "bread", "cup", "book")),
    ("spoke", "spoken", ("word",)),
    ("broke", "broken", ("cup", "bread", "sword", "door", "ring")),
    ("knew", "known", ("king", "city", "man", "way", "truth")),
    ("drove", "driven", ("horses", "camels", "goats", "sheep")),
    ("chose", "chosen", ("ring", "sword", "house", "field", "way")),
    ("forgot", "forgotten", ("word", "way", "book", "song")),
    ("hid", "hidden", ("gold", "sword", "book", "ring", "letter")),
    ("stole", "stolen", ("gold", "horse", "ring", "cup", "lamb")),
    ("threw", "thrown", ("stone", "sword", "cup", "bread")),
    ("drew", "drawn", ("sword", "water", "line")),
    ("shook", "shaken", ("tree", "house", "hand")),
    ("began", "begun", ("work", "journey", "song")),
    ("sang", "sung", ("song", "psalm")),
    ("drank", "drunk", ("wine", "water", "cup")),
    ("forsook", "forsaken", ("city", "house", "king", "way")),
    ("smote", "smitten", ("king", "city", "servant", "rock")),
)
#: Participles that follow "had ever" (irregular and regular), with objects.
PARTICIPLES = (
    ("seen", ("city", "temple", "sea", "king", "ship")), ("taken", ("sword", "cup", "ring")),
    ("given", ("gift", "bread", "ring")), ("written", ("letter", "book", "song")),
    ("eaten", ("bread", "fruit", "lamb")), ("broken", ("cup", "bread", "sword")),
    ("found", ("ring", "gold", "way", "book")), ("built", ("house", "city", "temple")),
    ("sold", ("field", "house", "horse")), ("killed", ("lamb", "goat", "king")),
    ("heard", ("song", "word", "voice")), ("known", ("king", "truth", "way")),
)  # fmt: skip
#: Adverbs in the place of "not" that do not license "ever" (BLiMP's sentential negation).
NOT_LICENSORS = ("also", "often", "surely", "probably", "really", "still")
#: Clauses that embed a wh- or that-clause.
MATRIX = ("I know", "We knew", "They remember", "You saw", "He asked", "She forgot",
          "I wonder")  # fmt: skip
#: Matrix verbs that take a wh-clause but not a that-clause read as a statement ("I wonder
#: that ..." is odd): used for the gap subtype only.
WH_ONLY = ("He asked", "I wonder")


def _the(word: str) -> str:
    return f"The {word}"


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text[0].upper() + text[1:] + "."


# ------------------------------------------------------------------------------- templates


def _subject_verb() -> dict[str, Iterator[tuple[str, str]]]:
    def singular():
        for (sg, _, _), c in itertools.product(PEOPLE, COMPLEMENTS):
            for good, bad in (("is", "are"), ("was", "were")):
                yield f"the {sg} {good} {c}", f"the {sg} {bad} {c}"
        for (sg, _, _), (s3, base), after in itertools.product(PEOPLE, PRESENT, PRESENT_AFTER):
            yield f"the {sg} {s3} {after}", f"the {sg} {base} {after}"

    def plural():
        for (_, pl, _), c in itertools.product(PEOPLE, COMPLEMENTS):
            for good, bad in (("are", "is"), ("were", "was")):
                yield f"the {pl} {good} {c}", f"the {pl} {bad} {c}"
        for (_, pl, _), (s3, base), after in itertools.product(PEOPLE, PRESENT, PRESENT_AFTER):
            yield f"the {pl} {base} {after}", f"the {pl} {s3} {after}"

    def attractor():  # the verb agrees with the head, not with the nearer noun
        for (sg, _, _), (_, pl, _), c in itertools.product(PEOPLE, PEOPLE, COMPLEMENTS):
            if sg != pl:
                yield f"the {sg} of the {pl} was {c}", f"the {sg} of the {pl} were {c}"
                yield f"the {pl} of the {sg} were {c}", f"the {pl} of the {sg} was {c}"

    return {"singular": singular(), "plural": plural(), "attractor": attractor()}


def _determiner_noun() -> dict[str, Iterator[tuple[str, str]]]:
    def singular():
        for (who, _, _), verb, (sg, _) in itertools.product(PEOPLE, TRANSITIVE, THINGS):
            for good, bad in (("this", "these"), ("that", "those")):
                yield f"the {who} {verb} {good} {sg}", f"the {who} {verb} {bad} {sg}"

    def plural():
        for (who, _, _), verb, (_, pl) in itertools.product(PEOPLE, TRANSITIVE, THINGS):
            for good, bad in (("these", "this"), ("those", "that")):
                yield f"the {who} {verb} {good} {pl}", f"the {who} {verb} {bad} {pl}"

    return {"singular": singular(), "plural": plural()}


def _anaphor() -> dict[str, Iterator[tuple[str, str]]]:
    def gender():
        for (sg, _, g), verb, after in itertools.product(PEOPLE, REFLEXIVE, REFLEXIVE_AFTER):
            if g:
                good, bad = ("himself", "herself") if g == "m" else ("herself", "himself")
                yield f"the {sg} {verb} {good}{after}", f"the {sg} {verb} {bad}{after}"

    def number():
        for (_, pl, g), verb, after in itertools.product(PEOPLE, REFLEXIVE, REFLEXIVE_AFTER):
            bad = "herself" if g == "f" else "himself"
            yield f"the {pl} {verb} themselves{after}", f"the {pl} {verb} {bad}{after}"

    return {"gender": gender(), "number": number()}


def _irregular() -> dict[str, Iterator[tuple[str, str]]]:
    def past():
        for (who, _, _), (verb, part, objects) in itertools.product(PEOPLE, IRREGULAR):
            for obj in objects:
                yield f"the {who} {verb} the {obj}", f"the {who} {part} the {obj}"

    def participle():
        for (who, _, _), (verb, part, objects) in itertools.product(PEOPLE, IRREGULAR):
            for obj in objects:
                yield f"the {who} had {part} the {obj}", f"the {who} had {verb} the {obj}"

    return {"past": past(), "participle": participle()}


def _argument_structure() -> dict[str, Iterator[tuple[str, str]]]:
    def transitive():
        for (who, _, _), t, i, (obj, _) in itertools.product(
            PEOPLE, TRANSITIVE, INTRANSITIVE, THINGS
        ):
            yield f"the {who} {t} the {obj}", f"the {who} {i} the {obj}"

    def intransitive():
        for (who, _, _), i, t, when in itertools.product(PEOPLE, INTRANSITIVE, TRANSITIVE, TIMES):
            yield f"the {who} {i} {when}", f"the {who} {t} {when}"

    return {"transitive": transitive(), "intransitive": intransitive()}


def _npi() -> dict[str, Iterator[tuple[str, str]]]:
    def no():
        for (who, _, _), (part, objects) in itertools.product(PEOPLE, PARTICIPLES):
            for obj in objects:
                rest = f"{who} had ever {part} the {obj}"
                yield f"no {rest}", f"the {rest}"

    def negation():  # the licensor is the likelier word here, the unlicensed one in `no`
        for (who, _, _), (part, objects), adverb in itertools.product(
            PEOPLE, PARTICIPLES, NOT_LICENSORS
        ):
            for obj in objects:
                good = f"the {who} had not ever {part} the {obj}"
                yield good, f"the {who} had {adverb} ever {part} the {obj}"

    return {"no": no(), "not": negation()}


def _filler_gap() -> dict[str, Iterator[tuple[str, str]]]:
    def gap():
        for m, (who, _, _), verb, when in itertools.product(MATRIX, PEOPLE, TRANSITIVE, TIMES):
            if m not in WH_ONLY:
                yield f"{m} what the {who} {verb} {when}", f"{m} that the {who} {verb} {when}"

    def no_gap():
        for m, (who, _, _), verb, (obj, _) in itertools.product(MATRIX, PEOPLE, TRANSITIVE, THINGS):
            if m not in WH_ONLY:
                yield f"{m} that the {who} {verb} the {obj}", f"{m} what the {who} {verb} the {obj}"

    return {"gap": gap(), "no_gap": no_gap()}


TEMPLATES: dict[str, Callable[[], dict[str, Iterator[tuple[str, str]]]]] = {
    "subject_verb_agreement": _subject_verb,
    "determiner_noun_agreement": _determiner_noun,
    "anaphor_agreement": _anaphor,
    "irregular_forms": _irregular,
    "argument_structure": _argument_structure,
    "npi_licensing": _npi,
    "filler_gap_dependency": _filler_gap,
}


# ------------------------------------------------------------------------------- sampling


def words_of(sentence: str) -> list[str]:
    """The lower-case words of a sentence."""
    return re.findall(r"[a-z]+(?:'[a-z]+)?", sentence.lower())


def make_syntax_pairs(
    n_pairs: int,
    seed: int = 0,
    *,
    counts: Mapping[str, int] | None = None,
    min_count: int = 1,
    phenomena: tuple[str, ...] = PHENOMENA,
) -> list[SyntaxPair]:
    """`n_pairs` minimal pairs, spread evenly over the phenomena and, within one, its subtypes.

    counts: how often each word occurs in the corpus texts (`corpus_word_counts`); every word
    of both sentences must occur at least `min_count` times (None: no filter). Raises
    InputError when a subtype has fewer usable pairs than its share.
    """
    if n_pairs < len(phenomena):
        raise InputError(f"need at least one pair per phenomenon ({len(phenomena)}), got {n_pairs}")
    unknown = [p for p in phenomena if p not in TEMPLATES]
    if unknown:
        raise InputError(f"unknown phenomena {unknown}; known: {list(TEMPLATES)}")

    def usable(sentence: str) -> bool:
        return counts is None or all(counts.get(w, 0) >= min_count for w in words_of(sentence))

    pairs: list[SyntaxPair] = []
    for p, phenomenon in enumerate(phenomena):
        share = n_pairs // len(phenomena) + (p < n_pairs % len(phenomena))
        subtypes = TEMPLATES[phenomenon]()
        for s, (subtype, fillings) in enumerate(subtypes.items()):
            want = share // len(subtypes) + (s < share % len(subtypes))
            candidates = sorted({(_sentence(g), _sentence(b)) for g, b in fillings})
            rng = np.random.default_rng([seed, p, s])
            chosen: list[SyntaxPair] = []
            for i in rng.permutation(len(candidates)):  # checked lazily: most are never drawn
                if len(chosen) == want:
                    break
                good, bad = candidates[int(i)]
                if good != bad and usable(good) and usable(bad):
                    chosen.append(SyntaxPair(phenomenon, subtype, good, bad))
            if len(chosen) < want:
                raise InputError(
                    f"{phenomenon}/{subtype}: {len(chosen)} pairs use only corpus words "
                    f"(min_count {min_count}), {want} wanted"
                )
            pairs.extend(chosen)
    return pairs


def frequency_baseline(pairs: list[SyntaxPair], counts: Mapping[str, int]) -> dict[str, float]:
    """What word frequency alone scores: the share of pairs (per type, and "all") whose
    grammatical sentence is likelier under a unigram model of the texts (add-one; ties 1/2)."""
    total, vocab = sum(counts.values()), len(counts) + 1

    def logp(sentence: str) -> float:
        return sum(math.log((counts.get(w, 0) + 1) / (total + vocab)) for w in words_of(sentence))

    outcomes: dict[str, list[float]] = {}
    for p in pairs:
        good, bad = logp(p.good), logp(p.bad)
        outcome = 1.0 if good > bad else 0.5 if good == bad else 0.0
        for key in ("all", p.type):
            outcomes.setdefault(key, []).append(outcome)
    return {k: round(float(np.mean(v)), 4) for k, v in outcomes.items()}
