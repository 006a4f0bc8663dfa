"""Score probe sets with a bundle's semantic LM, as ZeroSpeech 2021 scores sWUGGY and sBLIMP.

    scorer = ProbeScorer.from_bundle("segue/assets/speech-tiny")
    report = evaluate_probes(scorer, "runs/probes", ("lexical", "syntactic"))
    print(report.format()); report.write("runs/probes/speech-tiny.json")

Each item's audio is tokenized by the bundle's semantic tokenizer and scored by the semantic LM:
the sum of log p(s_t | BOS, s_<t) over its tokens (ZeroSpeech's pseudo-log-probability for an
autoregressive LM; with `eos`, the end of the file is scored too), and that sum divided by the
tokens scored (the length-normalised variant, which does not favour the shorter item). Items
longer than the LM's window are scored in windows that keep the stage's prompt as context.

A pair counts 1 when its correct item (the word, the grammatical sentence) scores higher, 0 when
lower, 1/2 on a tie; an id's score is the mean of its pairs (its voices in the official sets),
and the accuracy the mean over ids (chance 50 %), with a 95 % percentile bootstrap interval over
ids. Syntax is also reported per phenomenon (`type`), words per frequency band in the training
texts (ZeroSpeech's bands).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from segue import audio as audio_io
from segue.config import write_atomic
from segue.errors import InputError
from segue.eval.probes.sets import (
    BUILD_NAME,
    TASKS,
    ProbeItem,
    ProbeSet,
    read_probe_set,
    set_folder,
)
from segue.lm.layout import SemanticLayout, dedup, prompt_frames
from segue.lm.stages import StageLM

#: Audio quieter than this peak is refused as silent (as `AudioLM` refuses prompts).
SILENCE_PEAK = 1e-4
#: Published accuracies (%) on the official sets, for the report: AudioLM (Borsos et al. 2022,
#: table 3), GSLM (Lakhotia et al. 2021, as AudioLM reports it), chance.
REFERENCE = {
    "lexical": {"AudioLM": 71.5, "GSLM": 64.8, "chance": 50.0},
    "syntactic": {"AudioLM": 64.7, "GSLM": 54.2, "chance": 50.0},
}
#: Word frequency bands (counts in the training texts), as ZeroSpeech 2021 reports sWUGGY.
FREQUENCY_BANDS = (("oov", 0, 0), ("1-5", 1, 5), ("6-20", 6, 20), ("21-100", 21, 100),
                   (">100", 101, None))  # fmt: skip


class Tokenizer(Protocol):
    """What scoring needs of a semantic tokenizer (`SemanticTokenizer` is one)."""

    @property
    def sample_rate(self) -> int: ...

    def tokenize(self, audio: torch.Tensor) -> torch.Tensor: ...


@dataclass
class ProbeScorer:
    """Audio [T] -> semantic tokens [n] -> summed log-probability under a semantic LM."""

    tokenizer: Tokenizer
    lm: StageLM
    eos: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.lm.layout, SemanticLayout):
            raise InputError(
                f"the probes score with a semantic LM, and this is a {self.lm.stage.stage} one"
            )

    @classmethod
    def from_model(cls, model, *, eos: bool = False, name: str = "") -> ProbeScorer:
        """The tokenizer and semantic LM of an `AudioLM`."""
        return cls(model.tokenizer, model.semantic_lm, eos=eos, name=name)

    @classmethod
    def from_bundle(
        cls, directory: str | os.PathLike, *, device: str = "cpu", eos: bool = False
    ) -> ProbeScorer:
        """Load a bundle folder (`AudioLM.from_pretrained`) after checking it has the two parts
        scoring needs (its semantic tokenizer and semantic LM)."""
        from segue.pipeline import AudioLM

        path = Path(directory)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no model bundle there")
        for part, what in (("semantic_lm", "semantic LM"), ("semantic", "semantic tokenizer")):
            if not (path / part).is_dir():
                raise InputError(
                    f"{path}: the bundle has no {what} ({part}/), which scores the probes"
                )
        model = AudioLM.from_pretrained(path, device=device)
        return cls.from_model(model, eos=eos, name=str(path))

    @property
    def device(self) -> torch.device:
        return self.lm.model.head.weight.device

    @torch.inference_mode()
    def tokens(self, audio: np.ndarray | torch.Tensor, where: str = "audio") -> torch.Tensor:
        """Audio [T] at the tokenizer's rate -> semantic tokens [n] (deduplicated when the LM
        was trained on deduplicated tokens). Refuses empty, non-finite and silent audio."""
        x = torch.as_tensor(audio, dtype=torch.float32).reshape(-1)
        if x.numel() == 0:
            raise InputError(f"{where}: empty audio")
        if not bool(torch.isfinite(x).all()):
            raise InputError(f"{where}: NaN or infinite samples")
        if float(x.abs().max()) < SILENCE_PEAK:
            raise InputError(f"{where}: silent (peak below {SILENCE_PEAK:g})")
        tokens = self.tokenizer.tokenize(x[None])[0].long()
        if self.lm.stage.dedup:
            tokens = dedup(tokens)
        if tokens.numel() == 0:
            raise InputError(f"{where}: too short for one semantic token")
        return tokens

    @torch.inference_mode()
    def logprob(self, tokens: torch.Tensor) -> tuple[float, int]:
        """Tokens [n] -> (sum of log p(s_t | BOS, s_<t) [+ log p(EOS | all)], tokens scored).

        Probabilities are over the ids the LM may generate there (codes and EOS). Past the
        window, each window keeps the stage's prompt (at least one token) as context.
        """
        layout, model = self.lm.layout, self.lm.model
        tokens = tokens.reshape(-1).long().to(self.device)
        n = tokens.numel()
        if n == 0:
            raise InputError("no tokens to score")
        if int(tokens.min()) < 0 or int(tokens.max()) >= layout.n_codes:
            raise InputError(f"tokens outside the LM's codes [0, {layout.n_codes})")
        window, keep = layout.window, max(1, prompt_frames(self.lm.stage))
        bos = torch.tensor([layout.bos], device=self.device)
        eos = torch.tensor([layout.eos], device=self.device)
        total, start = 0.0, 0
        while start < n:
            context = bos if start == 0 else tokens[max(0, start - keep) : start]
            new = tokens[start : start + window - (0 if start == 0 else len(context))]
            last = start + len(new) == n
            ids = torch.cat([context, new, eos] if last and self.eos else [context, new])
            logits = model(ids[None])[0, len(context) - 1 : -1].float()
            logp = torch.log_softmax(logits[:, : layout.eos + 1], dim=-1)
            targets = ids[len(context) :]
            total += float(logp.gather(1, targets[:, None]).sum())
            start += len(new)
        return total, n + int(self.eos)

    def score_file(self, path: str | os.PathLike) -> tuple[float, int]:
        """(summed log-probability, tokens scored) of one audio file."""
        audio = audio_io.load(path, self.tokenizer.sample_rate)
        return self.logprob(self.tokens(audio, str(path)))


@dataclass
class Accuracy:
    """Share of ids whose correct items score higher, and its 95 % bootstrap interval."""

    accuracy: float
    low: float
    high: float
    ids: int

    def __str__(self) -> str:
        return f"{100 * self.accuracy:5.1f} % [{100 * self.low:.1f}, {100 * self.high:.1f}]"


def accuracy(
    outcomes: Sequence[float], *, bootstrap: int = 1000, seed: int = 0, level: float = 0.95
) -> Accuracy:
    """Mean of per-id outcomes [ids] (each in [0, 1]) and its percentile bootstrap interval
    (`bootstrap` resamples of the ids; 0: no interval, low = high = the mean)."""
    values = np.asarray(outcomes, dtype=np.float64)
    if values.size == 0:
        raise InputError("no pairs to score")
    mean = float(values.mean())
    if bootstrap < 1:
        return Accuracy(mean, mean, mean, int(values.size))
    rng = np.random.default_rng(seed)
    means = np.empty(bootstrap)
    for b in range(0, bootstrap, 256):  # in blocks: bootstrap x ids indices at once is large
        k = min(256, bootstrap - b)
        means[b : b + k] = values[rng.integers(0, values.size, (k, values.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return Accuracy(mean, float(low), float(high), int(values.size))


def id_outcomes(probe_set: ProbeSet, scores: np.ndarray) -> dict[str, float]:
    """{id: mean over its pairs of 1 (correct item higher), 1/2 (tie), 0}; scores [items]."""
    per_id: dict[str, list[float]] = defaultdict(list)
    for pair in probe_set.pairs:
        good, bad = scores[pair.good], scores[pair.bad]
        per_id[pair.id].append(1.0 if good > bad else 0.5 if good == bad else 0.0)
    return {i: float(np.mean(v)) for i, v in per_id.items()}


@dataclass
class GroupResult:
    """Accuracy of the ids of one phenomenon or frequency band."""

    name: str
    summed: Accuracy
    normalised: Accuracy


@dataclass
class ProbeResult:
    """One set's accuracy, summed and length-normalised, overall and per group."""

    task: str
    folder: str
    items: int
    pairs: int
    ids: int
    summed: Accuracy
    normalised: Accuracy
    group_by: str = ""  # "type" (phenomenon) or "frequency" (band); "" without groups
    groups: list[GroupResult] = field(default_factory=list)
    #: syntactic: per "type/subtype" (a model that prefers one word whatever the grammar scores
    #: high on one subtype and low on its mirror)
    subtypes: list[GroupResult] = field(default_factory=list)
    mean_tokens: float = 0.0  # per item
    seconds: float = 0.0
    #: segue's syntactic sets: what word frequency alone scores, per type and "all" (the set's
    #: build.json); empty for other sets
    frequency_baseline: dict[str, float] = field(default_factory=dict)


@dataclass
class ProbeReport:
    """The results of one model on the probe sets, with the published references."""

    model: str
    eos: bool
    bootstrap: int
    seed: int
    max_pairs: int | None
    results: list[ProbeResult]
    reference: dict = field(default_factory=lambda: REFERENCE)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    def write(self, path: str | os.PathLike) -> Path:
        """The JSON report, written atomically."""
        write_atomic(path, self.to_json().encode())
        return Path(path)

    def format(self) -> str:
        """A table per set: accuracy [95 % interval], summed and length-normalised."""
        lines = [f"model {self.model}" + ("  (EOS scored)" if self.eos else "")]
        for r in self.results:
            refs = ", ".join(f"{k} {v:g} %" for k, v in self.reference.get(r.task, {}).items())
            base = r.frequency_baseline
            head = f"   {'word frequency':>16s}" if base else ""
            lines += [
                "",
                f"{r.task}: {r.ids} ids, {r.pairs} pairs, {r.items} items "
                f"({r.mean_tokens:.1f} tokens each), {r.seconds:.0f} s  [{refs}]",
                f"  {'':40s} {'summed log-prob':>24s}   {'length-normalised':>24s}{head}",
                _row("all", r.summed, r.normalised, base.get("all")),
            ]
            for g in r.groups:
                name = f"{g.name} ({g.summed.ids})"
                lines.append(_row(name, g.summed, g.normalised, base.get(g.name)))
            if r.subtypes:
                lines.append("  by subtype")
            for g in r.subtypes:
                lines.append(_row(f"  {g.name} ({g.summed.ids})", g.summed, g.normalised, None))
        return "\n".join(lines)


def _row(name: str, summed: Accuracy, normalised: Accuracy, baseline: float | None) -> str:
    """One line of `ProbeReport.format`'s table."""
    extra = "" if baseline is None else f"   {100 * baseline:14.1f} %"
    return f"  {name:40s} {summed!s:>24s}   {normalised!s:>24s}{extra}"


def score_set(
    scorer: ProbeScorer, probe_set: ProbeSet, *, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(summed log-probabilities [items], tokens scored [items]) of every item of a set."""
    logp = np.empty(len(probe_set.items))
    count = np.empty(len(probe_set.items), dtype=np.int64)
    desc = f"{probe_set.task} items"
    for i, item in enumerate(tqdm(probe_set.items, desc=desc, unit="file", disable=not progress)):
        logp[i], count[i] = scorer.score_file(item.path)
    return logp, count


def _band(frequency: int | None) -> str | None:
    if frequency is None:
        return None
    for name, lo, hi in FREQUENCY_BANDS:
        if frequency >= lo and (hi is None or frequency <= hi):
            return name
    return None


def evaluate_set(
    probe_set: ProbeSet,
    logp: np.ndarray,
    count: np.ndarray,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    seconds: float = 0.0,
) -> ProbeResult:
    """Accuracies of a scored set (see the module docstring)."""
    summed = id_outcomes(probe_set, logp)
    normalised = id_outcomes(probe_set, logp / np.maximum(count, 1))
    ids = list(summed)

    def acc(which: dict[str, float], keep: list[str], salt: int) -> Accuracy:
        return accuracy([which[i] for i in keep], bootstrap=bootstrap, seed=seed + salt)

    def grouped(name_of: Callable[[ProbeItem], str | None]) -> list[GroupResult]:
        """Accuracies of the ids grouped by name_of(the id's first correct item)."""
        group_of: dict[str, str | None] = {}
        for pair in probe_set.pairs:
            group_of.setdefault(pair.id, name_of(probe_set.items[pair.good]) or None)
        names = sorted({g for g in group_of.values() if g})
        if probe_set.task == "lexical":
            names = [b[0] for b in FREQUENCY_BANDS if b[0] in names]
        out = []
        for k, name in enumerate(names):
            keep = [i for i in ids if group_of[i] == name]
            out.append(GroupResult(name, acc(summed, keep, 2 + k), acc(normalised, keep, 2 + k)))
        return out

    subtypes: list[GroupResult] = []
    if probe_set.task == "syntactic":
        groups = grouped(lambda item: item.type)
        if any(item.subtype for item in probe_set.items):
            subtypes = grouped(lambda item: f"{item.type}/{item.subtype}" if item.type else "")
    else:
        groups = grouped(lambda item: _band(item.frequency))
    return ProbeResult(
        task=probe_set.task,
        folder=str(probe_set.folder),
        items=len(probe_set.items),
        pairs=len(probe_set.pairs),
        ids=len(ids),
        summed=acc(summed, ids, 0),
        normalised=acc(normalised, ids, 0),
        group_by=("type" if probe_set.task == "syntactic" else "frequency") if groups else "",
        groups=groups,
        subtypes=subtypes,
        mean_tokens=float(count.mean()) if count.size else 0.0,
        seconds=round(seconds, 1),
    )


def _frequency_baseline(folder: Path) -> dict[str, float]:
    """The word-frequency baseline a segue-built set records in its build.json ({} if none)."""
    try:
        meta = json.loads((folder / BUILD_NAME).read_text())
        return {str(k): float(v) for k, v in meta["summary"]["frequency_baseline"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def write_submission(path: str | os.PathLike, probe_set: ProbeSet, logp: np.ndarray) -> Path:
    """The scores as a ZeroSpeech 2021 submission file: "<filename> <score>" per line."""
    lines = [f"{item.filename} {score:.6f}" for item, score in zip(probe_set.items, logp)]
    write_atomic(path, ("\n".join(lines) + "\n").encode())
    return Path(path)


def evaluate_probes(
    scorer: ProbeScorer,
    root: str | os.PathLike,
    tasks: Sequence[str] = TASKS,
    *,
    split: str = "dev",
    max_pairs: int | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
    submission: str | os.PathLike | None = None,
) -> ProbeReport:
    """Score the sets of ROOT (ZeroSpeech 2021 layout: ROOT/<task>/<split>/) and report.

    max_pairs: score at most this many ids per set (a seeded subset; None: all).
    submission: a folder to write ZeroSpeech submission files into (<task>/<split>.txt).
    """
    results = []
    for task in tasks:
        whole = read_probe_set(set_folder(root, task, split), task)
        probe_set = whole.subset(max_pairs, seed)
        started = time.perf_counter()
        logp, count = score_set(scorer, probe_set, progress=progress)
        seconds = time.perf_counter() - started
        if submission is not None:
            write_submission(Path(submission) / task / f"{split}.txt", probe_set, logp)
        result = evaluate_set(probe_set, logp, count, bootstrap=bootstrap, seed=seed,
                              seconds=seconds)  # fmt: skip
        if probe_set is whole:  # the set's recorded baseline is of all its pairs
            result.frequency_baseline = _frequency_baseline(probe_set.folder)
        results.append(result)
    return ProbeReport(scorer.name, scorer.eos, bootstrap, seed, max_pairs, results)
