"""Run a recipe: an ordered list of steps, each done once into OUT/<step>/.

A step's *record* is its own config section plus a digest of the records of the steps it reads,
so a step counts as done only while nothing it depends on has changed:

    OUT/recipe.json          the recipe's name and whole config (rewritten at every run)
    OUT/<step>/STARTED.json  the record, written before the step starts (and, with the time
                             spent, when an attempt is interrupted)
    OUT/<step>/DONE.json     the record + a few key numbers + `seconds`, the step's time over
                             all its attempts, written (atomically) when it ends

On a re-run, a step whose DONE.json holds the current record is skipped; one that was started
with the current record but not finished runs again and resumes (trainings continue from their
newest checkpoint, corpus building and tokenizing skip what is on disk). A step done or started
with another record is refused, before anything runs, unless it is forced: `force` wipes the
step's folder and those of every step that depends on it, and redoes them.

Under torchrun (N processes on M nodes, OUT on a file system every node sees) every process runs
`run_recipe`: rank 0 plans and sends the plan to the others (so every rank skips the same
steps), writes recipe.json and the markers, and runs the steps that are not `every_rank`
(corpus, evaluate, bundle) while the others wait; the `every_rank` steps (trainings, tokenizing)
run on every rank, and use `Context.main_only` for their rank-0 parts (the k-means fit).

Steps that need only done steps can run side by side in separate processes (`only`: the LMs
and SoundStorm all need just the token shards): each running step holds OUT/<step>/LOCK (an
exclusive `flock`, released when its process ends, even by a crash), so two runs never train
the same step at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from segue.config import config_differences, from_dict, to_dict, write_atomic
from segue.errors import InputError
from segue.train.distributed import DistInfo, barrier, broadcast_object, current, wait_group

DONE_NAME = "DONE.json"
STARTED_NAME = "STARTED.json"
RECIPE_NAME = "recipe.json"
LOCK_NAME = "LOCK"

#: How long the other ranks wait while rank 0 runs a step alone (a corpus of 60k h is indexed by
#: rank 0): far beyond the process group's own timeout (NCCL's 10 min), on a gloo group.
MAIN_ONLY_WAIT = timedelta(days=3)

T = TypeVar("T")


class RecipeError(InputError):
    """A recipe that cannot run as asked (unknown step, changed config, ...)."""


@dataclass
class Context:
    """What a step function gets: the recipe's name, its whole config and the output folder."""

    out: Path
    recipe: str
    config: Any
    workers: int | None = None  # processes for corpus building (None: all cores)
    dist: DistInfo = field(default_factory=DistInfo)  # this process under torchrun
    wait: Any = None  # the long-wait group of `main_only` (None: the main group)

    def dir(self, step: str) -> Path:
        """The folder of `step`'s outputs."""
        return self.out / step

    def main_only(self, run: Callable[[], T]) -> T | None:
        """`run()` on rank 0 while the other ranks wait; its result on rank 0, None elsewhere.

        An exception on rank 0 is raised on every rank (the others get a RecipeError naming
        it), so the whole job stops with an error instead of waiting.
        """
        result, failure = None, None
        if self.dist.is_main:
            try:
                result = run()
            except Exception as error:
                failure = f"{type(error).__name__}: {error}"
                barrier(self.wait)
                broadcast_object(failure)
                raise
        barrier(self.wait)
        failure = broadcast_object(failure)
        if failure is not None:
            raise RecipeError(f"rank 0 failed: {failure}")
        return result


@dataclass(frozen=True)
class Step:
    """One step: `run(ctx)` makes OUT/<name>/ from the folders of `needs`, returns key numbers.

    Its settings are the recipe config's field of the same name. Under torchrun, an
    `every_rank` step runs on every process (a DDP training, tokenizing split by rank; its
    numbers are rank 0's); any other runs on rank 0 while the others wait.
    """

    name: str
    run: Callable[[Context], dict[str, Any]]
    needs: tuple[str, ...] = ()
    help: str = ""
    every_rank: bool = False
    #: needs that depend on the config (e.g. the codec needs the semantic step only when it
    #: learns semantic targets): a change there redoes this step only when it reads them
    needs_when: Callable[[Any], tuple[str, ...]] | None = None

    def needs_of(self, config: Any) -> tuple[str, ...]:
        """`needs`, and `needs_when(config)`'s."""
        return self.needs + (self.needs_when(config) if self.needs_when else ())


@dataclass(frozen=True)
class Recipe:
    """A named recipe: a config factory (one field per step) and the steps, in order."""

    name: str
    help: str
    make_config: Callable[[], Any]
    steps: tuple[Step, ...]

    @property
    def step_names(self) -> list[str]:
        return [step.name for step in self.steps]


@dataclass
class StepState:
    """Where a step stands in OUT: "done", "started" (resumable), "new" or "changed"."""

    step: str
    state: str
    why: str = ""
    record: dict[str, Any] = field(default_factory=dict)


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def records(recipe: Recipe, config: Any) -> dict[str, dict[str, Any]]:
    """Each step's record: {"config": its section, "inputs": {step it needs: digest of that
    step's record}}."""
    out: dict[str, dict[str, Any]] = {}
    for step in recipe.steps:
        out[step.name] = {
            "config": to_dict(getattr(config, step.name)),
            "inputs": {need: _digest(out[need]) for need in step.needs_of(config)},
        }
    return out


def dependents(recipe: Recipe, config: Any, names: Iterable[str]) -> list[str]:
    """`names` and every step that needs one of them, directly or not, in recipe order."""
    chosen = set(names)
    for step in recipe.steps:  # steps come after the steps they need
        if chosen & set(step.needs_of(config)):
            chosen.add(step.name)
    return [name for name in recipe.step_names if name in chosen]


def explain(step: str, old: dict[str, Any], new: dict[str, Any], limit: int = 4) -> str:
    """What differs between two records, e.g. `codec.optim.max_steps: 4 -> 5`."""
    changes = config_differences(old.get("config", {}), new["config"], step)
    inputs = sorted(
        k
        for k in set(old.get("inputs", {})) | set(new["inputs"])
        if old.get("inputs", {}).get(k) != new["inputs"].get(k)
    )
    if inputs:
        changes.append(f"inputs changed: {', '.join(inputs)}")
    more = f" (+{len(changes) - limit} more)" if len(changes) > limit else ""
    return "; ".join(changes[:limit]) + more


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise RecipeError(f"{path}: unreadable marker ({error}); remove it or --force") from error


def step_state(
    directory: Path,
    step: str,
    record: dict[str, Any],
    normalize: Callable[[Any], Any] | None = None,
    stored_needs: dict[str, dict[str, Any] | None] | None = None,
) -> StepState:
    """Compare a step folder's markers with the current record.

    A marker written before a config field existed still matches: `normalize` (the step's
    section through its dataclass) fills the missing fields with their defaults, and an input
    digest that differs only because the needed step's record gained such fields is accepted
    when it is the digest of that step's own marker on disk (`stored_needs`, given only for
    needed steps that are done with the current config), i.e. this step saw exactly that run.
    A need the marker does not list at all is a step added to the recipe after it was written
    (codec_decoder): the step ran without it, as the recipe then was, and stays done.
    """
    for name, state in ((DONE_NAME, "done"), (STARTED_NAME, "started")):
        marker = _read(directory / name)
        if marker is None:
            continue
        old = {"config": marker.get("config"), "inputs": marker.get("inputs", {})}
        if old != record and normalize is not None:
            old = _normalized(old, normalize, record, stored_needs or {})
        if old == record:
            return StepState(step, state, record=record)
        verb = "done" if state == "done" else "started"
        return StepState(
            step, "changed", f"{verb} with another config: {explain(step, old, record)}"
        )
    return StepState(step, "new", record=record)


def _normalized(
    old: dict[str, Any],
    normalize: Callable[[Any], Any],
    record: dict[str, Any],
    stored_needs: dict[str, dict[str, Any] | None],
) -> dict[str, Any]:
    """`old` with its config through `normalize` and each input digest that matches the needed
    step's stored marker replaced by the current one (see `step_state`)."""
    try:
        config = normalize(old["config"])
    except (ValueError, TypeError):
        return old  # a removed or retyped field: a real change, shown as it is
    inputs = dict(old["inputs"])
    for need, digest in record["inputs"].items():
        if need not in inputs:  # a step added to the recipe after this marker was written
            inputs[need] = digest
            continue
        stored = stored_needs.get(need)
        if inputs.get(need) != digest and stored is not None and inputs.get(need) == _digest(
            stored
        ):
            inputs[need] = digest
    return {"config": config, "inputs": inputs}


def _consumed(out: Path, record: dict[str, Any]) -> dict[str, str]:
    """The input digests a step's markers keep: of each need's DONE marker on disk (the run it
    reads), else of the need's current record. A marker written by an older segue digests
    differently from its record today (fields added since fill in on reading): recording the
    current record would tie the step to today's fields, and the next added field would make
    it look changed."""
    inputs = dict(record["inputs"])
    for need in inputs:
        stored = _marker_record(out / need)
        if stored is not None:
            inputs[need] = _digest(stored)
    return inputs


def _marker_record(directory: Path) -> dict[str, Any] | None:
    """The record a step's DONE marker holds, as its dependents digested it."""
    marker = _read(directory / DONE_NAME)
    if marker is None:
        return None
    return {"config": marker.get("config"), "inputs": marker.get("inputs", {})}


def plan(
    recipe: Recipe,
    config: Any,
    out: str | Path,
    *,
    until: str | None = None,
    force: Iterable[str] = (),
) -> tuple[list[StepState], list[str]]:
    """The steps to go through (up to `until`) with their states, and the folders to wipe first.

    Raises RecipeError for unknown step names and for changed steps that are not forced.
    """
    states, wiped = step_states(recipe, config, out, until=until, force=force)
    message = refusal(recipe, config, out, states)
    if message:
        raise RecipeError(message)
    return states, wiped


def step_states(
    recipe: Recipe,
    config: Any,
    out: str | Path,
    *,
    until: str | None = None,
    force: Iterable[str] = (),
) -> tuple[list[StepState], list[str]]:
    """`plan` without the refusal: every state ("changed" included), and the folders to wipe.
    Reads the markers, writes nothing. Raises RecipeError for unknown step names."""
    out, force = Path(out), list(force)
    names = recipe.step_names
    _check_names(recipe, [*force, *([until] if until else [])])
    wiped = dependents(recipe, config, force)
    last = names.index(until) if until else len(names) - 1
    states = []
    done_unchanged: set[str] = set()  # steps whose DONE marker matches the current config
    for name, record in list(records(recipe, config).items())[: last + 1]:
        if name in wiped:
            states.append(StepState(name, "new", "forced", record))
        else:
            section = type(getattr(config, name))
            states.append(
                step_state(
                    out / name,
                    name,
                    record,
                    normalize=lambda data, section=section: to_dict(from_dict(section, data)),
                    stored_needs={
                        need: _marker_record(out / need)
                        for need in record["inputs"]
                        if need in done_unchanged
                    },
                )
            )
            if states[-1].state == "done":
                done_unchanged.add(name)
    return states, wiped


def refusal(recipe: Recipe, config: Any, out: str | Path, states: list[StepState]) -> str | None:
    """The error a run gives for `states` with changed steps (None: it would not refuse)."""
    changed = [s for s in states if s.state == "changed"]
    if not changed:
        return None
    out = Path(out)
    lines = "\n".join(f"  {out / s.step}: {s.why}" for s in changed)
    first = changed[0].step
    redo = dependents(recipe, config, [first])
    also = f" and the steps that depend on it ({', '.join(redo[1:])})" if redo[1:] else ""
    return (
        f"{len(changed)} step(s) of {out} were made with another config:\n{lines}\n"
        f"Pass --force {first} to redo it{also}, or choose another --out"
    )


def run_recipe(
    recipe: Recipe,
    config: Any,
    out: str | Path,
    *,
    until: str | None = None,
    force: Iterable[str] = (),
    only: Iterable[str] = (),
    workers: int | None = None,
    log: Callable[[str], None] = print,
) -> list[StepState]:
    """Run (or resume) `recipe` with `config` into `out`; returns each step's final state.

    `only`: run just these steps (their needs must be done; the other steps are left as they
    are, e.g. for a run in another process). Raises RecipeError when a step is running in
    another process (its LOCK is held) or, with `only`, when a step it needs is not done.

    Prints one line per step: skipped, running, done in N s. A training stopped by Ctrl-C or
    SIGTERM checkpoints, then KeyboardInterrupt propagates (the step is not marked done).
    Under torchrun (a process group already joined) every rank calls it; see the module's
    docstring for who does what. Only rank 0 writes markers and logs.
    """
    out, info, only = Path(out), current(), list(only)
    main = info.is_main
    if not main:
        log = _silent
    planned: tuple[list[StepState], list[str]] | str | None = None
    if main:
        try:
            planned = plan(recipe, config, out, until=until or _last(recipe, only), force=force)
            _check_only(recipe, config, planned[0], only)
            _check_not_running(out, planned[1])
        except RecipeError as error:
            planned = str(error)
    planned = broadcast_object(planned)  # every rank runs and skips the same steps
    if isinstance(planned, str):
        raise RecipeError(planned)
    states, wiped = planned
    if main:
        for name in wiped:
            if (out / name).exists():
                log(f"--force: removing {out / name}")
                shutil.rmtree(out / name)
        body = {"recipe": recipe.name, "config": to_dict(config)}
        write_atomic(out / RECIPE_NAME, (json.dumps(body, indent=1) + "\n").encode())
    ctx = Context(out, recipe.name, config, workers, info, wait_group(MAIN_ONLY_WAIT))
    barrier()
    steps = {step.name: step for step in recipe.steps}
    width = max(len(name) for name in steps)
    for i, state in enumerate(states, 1):
        tag = f"[{i}/{len(recipe.steps)}] {state.step:<{width}}"
        if state.state == "done":
            log(f"{tag} skipped (done)")
            continue
        if only and state.step not in only:
            log(f"{tag} left out (--only)")
            continue
        step, directory = steps[state.step], ctx.dir(state.step)
        lock = _lock(directory) if main else None
        marker = {"step": state.step, **state.record}
        earlier = 0.0
        if main:  # rank 0 writes the markers
            marker["inputs"] = _consumed(out, state.record)
            if state.state == "started":  # time spent in the earlier attempts
                earlier = float((_read(directory / STARTED_NAME) or {}).get("seconds", 0.0))
            _write_marker(directory / STARTED_NAME, marker, earlier)
        log(f"{tag} {'resuming' if state.state == 'started' else 'running'}")
        start = time.perf_counter()
        try:
            if step.every_rank:
                numbers = step.run(ctx)
                barrier()  # every rank's share is on disk before the step counts as done
            else:
                numbers = ctx.main_only(lambda step=step: step.run(ctx))
        except BaseException:  # interrupted or failed: keep the time spent for the next attempt
            if main:
                seconds = earlier + time.perf_counter() - start
                _write_marker(directory / STARTED_NAME, marker, seconds)
            raise
        finally:
            if lock is not None:
                os.close(lock)
        this_run = time.perf_counter() - start
        seconds = earlier + this_run
        if main:
            _write_marker(directory / DONE_NAME, {**marker, "numbers": numbers}, seconds)
        runs = f" ({this_run:.1f} s in this run)" if earlier else ""
        log(f"{tag} done in {seconds:.1f} s{runs}")
        state.state = "done"
    barrier()
    return states


def _check_names(recipe: Recipe, names: Iterable[str]) -> None:
    """RecipeError for the first of `names` that is not a step of `recipe`."""
    for name in names:
        if name not in recipe.step_names:
            raise RecipeError(
                f"no step {name!r} in recipe {recipe.name}; steps: {', '.join(recipe.step_names)}"
            )


def _last(recipe: Recipe, only: list[str]) -> str | None:
    """The last of the `only` steps in the recipe's order (None: no `only`)."""
    _check_names(recipe, only)
    return max(only, key=recipe.step_names.index) if only else None


def _check_only(recipe: Recipe, config: Any, states: list[StepState], only: list[str]) -> None:
    """With `only`, every step an `only` step needs (directly) must be done already."""
    done = {s.step for s in states if s.state == "done"}
    for step in recipe.steps:
        if step.name in only:
            needs = step.needs_of(config)
            missing = [need for need in needs if need not in done and need not in only]
            if missing:
                raise RecipeError(
                    f"--only {step.name}: it needs {', '.join(missing)}, which is not done; "
                    f"run the recipe --until {missing[-1]} first"
                )


def _check_not_running(out: Path, wiped: list[str]) -> None:
    """--force never wipes the folder of a step that another process is running."""
    for name in wiped:
        holder = lock_holder(out / name)
        if holder is not None:
            raise RecipeError(
                f"--force would wipe {out / name}, but another process runs that step (pid "
                f"{holder}): stop it first"
            )


def _lock(directory: Path) -> int:
    """Hold DIR/LOCK (an exclusive flock, gone with this process); RecipeError if another
    process holds it. Returns the descriptor to close when the step ends."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _written_pid(fd)
        os.close(fd)
        raise RecipeError(
            f"{directory.name} is running in another process (pid {holder}, "
            f"{directory / LOCK_NAME}); run another step with --only, or wait for it"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _written_pid(fd: int) -> str:
    """The pid the LOCK's holder wrote into it ("?" before it has)."""
    return os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"


def lock_holder(directory: Path) -> str | None:
    """The pid (as written) of the process running this step folder's step, None when none
    does (its LOCK is free or absent). Takes and drops the lock: never blocks."""
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _written_pid(fd)
    finally:
        os.close(fd)  # also drops a lock taken above
    return None


def _silent(line: str) -> None:
    """The log of ranks other than 0."""


def _write_marker(path: Path, marker: dict[str, Any], seconds: float) -> None:
    """A marker with `seconds`: the step's time so far, over every attempt (resumes add up)."""
    body = {**marker, "seconds": round(seconds, 1)}
    write_atomic(path, (json.dumps(body, indent=1) + "\n").encode())
