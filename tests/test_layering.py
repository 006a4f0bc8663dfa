"""Imports run one way: audio, config, nn <- data, train <- models <- bundle, pipeline <- eval,
recipes <- commands, serve, cli. The engine knows no model, the LMs see only token ids (never the
codec or the semantic model), no model imports the pipeline or the CLI, and the shared layers
(`segue.nn`) import no other part of segue (segue.config at most)."""

from __future__ import annotations

import ast
from pathlib import Path

import segue

ROOT = Path(segue.__file__).parent
LEVELS = {
    "segue.audio": 0,
    "segue.config": 0,
    "segue.errors": 0,
    "segue.nn": 0,
    "segue.features": 0,
    "segue.pretrained": 0,
    "segue.plot": 0,
    "segue.runtime": 0,
    "segue.data": 1,
    "segue.train": 1,
    "segue.codec": 2,
    "segue.semantic": 2,
    "segue.lm": 2,
    "segue.soundstorm": 2,
    "segue.bundle": 3,
    "segue.pipeline": 3,
    "segue.sampling": 3,
    "segue.acoustic": 3,
    "segue.eval": 4,
    "segue.recipes": 4,
    "segue.commands": 5,
    "segue.serve": 5,
    "segue.cli": 5,
}
#: Imports across packages of one level that are allowed: SoundStorm trains on the LM's joined
#: shards (`segue.lm.data`), a token-level helper with no model in it.
SIDEWAYS = {("segue.soundstorm", "segue.lm")}
#: Imports of a higher level's module that are allowed: signal metrics with no model in them,
#: which the codec's validation logs.
UPWARD = {("segue.codec", "segue.eval.metrics")}


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _is_module(name: str) -> bool:
    return (ROOT / name).is_dir() or (ROOT / f"{name}.py").is_file()


def _imports(path: Path) -> set[str]:
    """The segue modules a file imports (`from segue import audio` -> segue.audio)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("segue.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "segue":  # modules only (not `from segue import __version__`)
                names = [a.name for a in node.names]
                found |= {f"segue.{n}" for n in names if _is_module(n)}
            elif node.module.startswith("segue."):
                found.add(node.module)
    return found


def _edges() -> list[tuple[str, str, str]]:
    """(file, importing package, imported module) for every import across packages."""
    edges = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        source = _package(".".join(parts))
        for module in _imports(path):
            if _package(module) != source:
                edges.append((str(path.relative_to(ROOT.parent)), source, module))
    return edges


def test_every_package_has_a_level():
    packages = {_package(m) for _, s, m in _edges()} | {s for _, s, _ in _edges()}
    assert packages - {"segue.__init__"} <= set(LEVELS), packages - set(LEVELS)


def violations(edges: list[tuple[str, str, str]]) -> list[str]:
    """The edges that import upward, or sideways between two model packages."""
    wrong = []
    for path, source, module in edges:
        target = _package(module)
        if source not in LEVELS or target not in LEVELS:
            continue
        up = LEVELS[target] > LEVELS[source] and (source, module) not in UPWARD
        sideways = LEVELS[target] == LEVELS[source] == 2 and (source, target) not in SIDEWAYS
        if up or sideways:
            wrong.append(f"{path}: {source} (level {LEVELS[source]}) imports {module}")
    return wrong


def test_imports_run_one_way():
    wrong = violations(_edges())
    assert not wrong, "\n".join(wrong)


def test_shared_layers_import_no_other_part_of_segue():
    """segue.nn sits under every model: torch, and at most segue.config, nothing else of segue."""
    wrong = [e for e in _edges() if e[1] == "segue.nn" and _package(e[2]) != "segue.config"]
    assert not wrong, wrong


def test_the_checker_flags_wrong_imports(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("from segue.codec.model import Codec\nfrom segue import pipeline\n")
    assert _imports(path) == {"segue.codec.model", "segue.pipeline"}
    edges = [
        ("lm.py", "segue.lm", "segue.codec.model"),  # an LM seeing the codec
        ("train.py", "segue.train", "segue.lm.model"),  # the engine knowing a model
        ("codec.py", "segue.codec", "segue.pipeline"),  # a model importing the pipeline
        ("codec.py", "segue.codec", "segue.eval.e2e"),  # only eval.metrics is allowed
        ("ss.py", "segue.soundstorm", "segue.lm.data"),  # allowed
        ("cli.py", "segue.cli", "segue.pipeline"),  # allowed
    ]
    flagged = [w.split(":")[0] for w in violations(edges)]
    assert flagged == ["lm.py", "train.py", "codec.py", "codec.py"]
