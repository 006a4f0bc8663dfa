"""The recipe step runner on a fake recipe (nothing trains): done steps skipped, changed configs
refused, --force, --until, resumed steps and their time."""

from __future__ import annotations

import json
import types
from dataclasses import dataclass, field, make_dataclass

import pytest

from segue.config import apply_overrides, to_dict
from segue.recipes import (
    DONE_NAME,
    RECIPE_NAME,
    STARTED_NAME,
    Context,
    Recipe,
    RecipeError,
    Step,
    plan,
    run_recipe,
)
from segue.recipes.runner import lock_holder

# ------------------------------------------------------------------ a fake recipe: no training


@dataclass
class Knob:
    n: int = 1


@dataclass
class FakeConfig:
    first: Knob = field(default_factory=Knob)
    second: Knob = field(default_factory=Knob)
    third: Knob = field(default_factory=Knob)
    last: Knob = field(default_factory=Knob)


class Calls:
    """Step functions that write OUT/<step>/out.txt and remember being called."""

    def __init__(self):
        self.names: list[str] = []
        self.interrupt: set[str] = set()

    def step(self, name: str):
        def run(ctx: Context) -> dict:
            self.names.append(name)
            if name in self.interrupt:
                self.interrupt.discard(name)
                raise KeyboardInterrupt
            ctx.dir(name).mkdir(parents=True, exist_ok=True)
            (ctx.dir(name) / "out.txt").write_text(str(getattr(ctx.config, name).n))
            return {"n": getattr(ctx.config, name).n}

        return run


@pytest.fixture
def fake():
    calls = Calls()
    needs = {"first": (), "second": ("first",), "third": ("first",), "last": ("second",)}
    steps = tuple(Step(name, calls.step(name), deps) for name, deps in needs.items())
    return Recipe("fake", "a test recipe", FakeConfig, steps), calls


def quiet_run(recipe, config, out, **kwargs) -> list[str]:
    lines: list[str] = []
    run_recipe(recipe, config, out, log=lines.append, **kwargs)
    return lines


def test_runs_every_step_once_then_skips_them(fake, tmp_path):
    recipe, calls = fake
    lines = quiet_run(recipe, FakeConfig(), tmp_path)
    assert calls.names == ["first", "second", "third", "last"]
    assert [line.split()[-1] for line in lines[::2]] == ["running"] * 4
    assert all(" done in " in line for line in lines[1::2])
    done = json.loads((tmp_path / "second" / DONE_NAME).read_text())
    assert done["config"] == {"n": 1} and done["numbers"] == {"n": 1}
    assert set(done["inputs"]) == {"first"}
    saved = json.loads((tmp_path / RECIPE_NAME).read_text())
    assert saved == {"recipe": "fake", "config": to_dict(FakeConfig())}

    calls.names.clear()
    lines = quiet_run(recipe, FakeConfig(), tmp_path)
    assert calls.names == []
    assert lines == [
        f"[{i}/4] {name:<6} skipped (done)"
        for i, name in enumerate(["first", "second", "third", "last"], 1)
    ]


def test_a_changed_config_is_refused_before_anything_runs(fake, tmp_path):
    recipe, calls = fake
    quiet_run(recipe, FakeConfig(), tmp_path)
    calls.names.clear()
    changed = apply_overrides(FakeConfig(), ["second.n=5"])
    with pytest.raises(RecipeError) as error:
        quiet_run(recipe, changed, tmp_path)
    message = str(error.value)
    assert "second.n: 1 -> 5" in message
    assert "last: done with another config: inputs changed: second" in message
    assert "--force second to redo it and the steps that depend on it (last)" in message
    assert "third" not in message  # does not read `second`
    assert calls.names == []
    assert json.loads((tmp_path / RECIPE_NAME).read_text())["config"]["second"] == {"n": 1}


@dataclass
class KnobV2(Knob):
    """Knob as a later segue defines it: one field more, with a default."""

    m: int = 0


@dataclass
class KnobV3(KnobV2):
    """Knob two versions later: another field more."""

    o: int = 0


def config_of(knob: type) -> type:
    """FakeConfig as the version of segue with this Knob defines it."""
    names = ("first", "second", "third", "last")
    return make_dataclass(
        f"FakeConfig{knob.__name__[4:]}", [(n, knob, field(default_factory=knob)) for n in names]
    )


FakeConfigV2, FakeConfigV3 = config_of(KnobV2), config_of(KnobV3)


def test_a_field_added_since_a_run_does_not_invalidate_it(fake, tmp_path):
    """Steps done before a config field existed stay done when it keeps its default."""
    recipe, calls = fake
    quiet_run(recipe, FakeConfig(), tmp_path)
    calls.names.clear()
    newer = Recipe("fake", "a test recipe", FakeConfigV2, recipe.steps)
    lines = quiet_run(newer, FakeConfigV2(), tmp_path)
    assert calls.names == [] and all("skipped (done)" in line for line in lines)
    # A non-default value of the new field is a change, shown as one.
    with pytest.raises(RecipeError) as error:
        quiet_run(newer, apply_overrides(FakeConfigV2(), ["second.m=3"]), tmp_path)
    assert "second.m: 0 -> 3" in str(error.value)
    assert "last: done with another config: inputs changed: second" in str(error.value)
    # A dependency redone since its dependent ran is still caught.
    done = tmp_path / "second" / DONE_NAME
    marker = json.loads(done.read_text())
    marker["config"]["n"] = 1  # same config...
    marker["inputs"]["first"] = "0" * 16  # ...but made from another run of `first`
    done.write_text(json.dumps(marker))
    with pytest.raises(RecipeError, match="second: done with another config: inputs changed"):
        quiet_run(newer, FakeConfigV2(), tmp_path)


def test_steps_run_across_two_added_fields_stay_done(fake, tmp_path):
    """A step run by a newer segue on a need done by an older one records that need's run
    itself (its marker on disk), so a third version still sees both as done (it once recorded
    the newer version's record of the need, which no later version could match)."""
    recipe, calls = fake
    quiet_run(recipe, FakeConfig(), tmp_path, until="second")
    v2 = Recipe("fake", "a test recipe", FakeConfigV2, recipe.steps)
    quiet_run(v2, FakeConfigV2(), tmp_path)  # third and last run now, under v2
    calls.names.clear()
    v3 = Recipe("fake", "a test recipe", FakeConfigV3, recipe.steps)
    lines = quiet_run(v3, FakeConfigV3(), tmp_path)
    assert calls.names == [] and all("skipped (done)" in line for line in lines)


@dataclass
class FakeConfigWithAddedStep(FakeConfig):
    added: Knob = field(default_factory=Knob)


def test_a_step_added_since_a_run_runs_and_its_dependents_stay_done(fake, tmp_path):
    """A newer recipe adds a step that a done step now needs (as codec_decoder was added before
    evaluate and bundle): the new step runs, the done step stays done (it ran as the recipe then
    was), and the next run skips them all. A later change of the new step is still caught."""
    recipe, calls = fake
    quiet_run(recipe, FakeConfig(), tmp_path)
    calls.names.clear()
    by_name = {step.name: step for step in recipe.steps}
    steps = (
        *(by_name[name] for name in ("first", "second", "third")),
        Step("added", calls.step("added"), ("first",)),
        Step("last", by_name["last"].run, ("second", "added")),
    )
    newer = Recipe("fake", "a test recipe", FakeConfigWithAddedStep, steps)
    lines = quiet_run(newer, FakeConfigWithAddedStep(), tmp_path)
    assert calls.names == ["added"]
    assert lines[-1] == "[5/5] last   skipped (done)"
    calls.names.clear()
    lines = quiet_run(newer, FakeConfigWithAddedStep(), tmp_path)
    assert calls.names == [] and all("skipped (done)" in line for line in lines)
    with pytest.raises(RecipeError, match=r"added\.n: 1 -> 2"):
        quiet_run(newer, apply_overrides(FakeConfigWithAddedStep(), ["added.n=2"]), tmp_path)


def test_force_redoes_the_step_and_its_dependents_only(fake, tmp_path):
    recipe, calls = fake
    quiet_run(recipe, FakeConfig(), tmp_path)
    (tmp_path / "second" / "stale.txt").write_text("old")
    calls.names.clear()
    changed = apply_overrides(FakeConfig(), ["second.n=5"])
    lines = quiet_run(recipe, changed, tmp_path, force=["second"])
    assert calls.names == ["second", "last"]
    assert not (tmp_path / "second" / "stale.txt").exists()  # the folder was wiped
    assert (tmp_path / "second" / "out.txt").read_text() == "5"
    assert lines[0] == f"--force: removing {tmp_path / 'second'}"
    calls.names.clear()
    quiet_run(recipe, changed, tmp_path)
    assert calls.names == []


def test_a_need_the_config_switches_on_counts_only_while_on(tmp_path):
    """Step.needs_when: `third` needs `second` only while third.n > 1 (as the codec needs the
    semantic step only when it learns semantic targets)."""
    calls = Calls()
    steps = (
        Step("first", calls.step("first")),
        Step("second", calls.step("second"), ("first",)),
        Step(
            "third",
            calls.step("third"),
            ("first",),
            needs_when=lambda config: ("second",) if config.third.n > 1 else (),
        ),
        Step("last", calls.step("last"), ("third",)),
    )
    recipe = Recipe("fake", "a test recipe", FakeConfig, steps)
    quiet_run(recipe, FakeConfig(), tmp_path)
    assert set(json.loads((tmp_path / "third" / DONE_NAME).read_text())["inputs"]) == {"first"}
    calls.names.clear()
    quiet_run(recipe, apply_overrides(FakeConfig(), ["second.n=2"]), tmp_path, force=["second"])
    assert calls.names == ["second"]  # off: third does not read second
    calls.names.clear()
    on = apply_overrides(FakeConfig(), ["second.n=2", "third.n=2"])
    quiet_run(recipe, on, tmp_path, force=["third"])
    assert calls.names == ["third", "last"]
    assert set(json.loads((tmp_path / "third" / DONE_NAME).read_text())["inputs"]) == {
        "first",
        "second",
    }
    calls.names.clear()
    with pytest.raises(RecipeError, match="second"):  # on: a change to second reaches third
        plan(recipe, apply_overrides(on, ["second.n=3"]), tmp_path)
    quiet_run(recipe, apply_overrides(on, ["second.n=3"]), tmp_path, force=["second"])
    assert calls.names == ["second", "third", "last"]


def test_until_stops_after_the_step_and_a_later_run_goes_on(fake, tmp_path):
    recipe, calls = fake
    quiet_run(recipe, FakeConfig(), tmp_path, until="second")
    assert calls.names == ["first", "second"]
    assert not (tmp_path / "third").exists()
    states, wiped = plan(recipe, FakeConfig(), tmp_path)
    assert [s.state for s in states] == ["done", "done", "new", "new"] and wiped == []
    calls.names.clear()
    quiet_run(recipe, FakeConfig(), tmp_path)
    assert calls.names == ["third", "last"]


def test_force_wipes_dependents_beyond_until(fake, tmp_path):
    recipe, calls = fake
    quiet_run(recipe, FakeConfig(), tmp_path)
    calls.names.clear()
    quiet_run(recipe, FakeConfig(), tmp_path, until="second", force=["first"])
    assert calls.names == ["first", "second"]
    assert not (tmp_path / "third").exists() and not (tmp_path / "last").exists()


def test_an_interrupted_step_resumes_and_keeps_its_config(fake, tmp_path):
    recipe, calls = fake
    calls.interrupt.add("second")
    with pytest.raises(KeyboardInterrupt):
        quiet_run(recipe, FakeConfig(), tmp_path)
    assert (tmp_path / "second" / STARTED_NAME).is_file()
    assert not (tmp_path / "second" / DONE_NAME).exists()
    with pytest.raises(RecipeError, match=r"started with another config: second\.n: 1 -> 2"):
        quiet_run(recipe, apply_overrides(FakeConfig(), ["second.n=2"]), tmp_path)
    calls.names.clear()
    lines = quiet_run(recipe, FakeConfig(), tmp_path)
    assert calls.names == ["second", "third", "last"]
    assert lines[1] == "[2/4] second resuming"


def test_a_resumed_step_counts_the_time_of_every_attempt(fake, tmp_path, monkeypatch):
    import segue.recipes.runner as runner

    recipe, calls = fake
    clock = [0.0]
    monkeypatch.setattr(runner, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    step = calls.step

    def slow(name: str, seconds: dict[str, float]):
        run = step(name)

        def timed(ctx: Context) -> dict:
            clock[0] += seconds.pop(name, 0.0)
            return run(ctx)

        return timed

    seconds = {"second": 5.0}
    steps = tuple(Step(s.name, slow(s.name, seconds), s.needs) for s in recipe.steps)
    recipe = Recipe(recipe.name, recipe.help, recipe.make_config, steps)
    calls.interrupt.add("second")
    with pytest.raises(KeyboardInterrupt):
        quiet_run(recipe, FakeConfig(), tmp_path)
    assert json.loads((tmp_path / "second" / STARTED_NAME).read_text())["seconds"] == 5.0

    seconds["second"] = 3.0
    lines = quiet_run(recipe, FakeConfig(), tmp_path)
    assert lines[2] == "[2/4] second done in 8.0 s (3.0 s in this run)"
    assert json.loads((tmp_path / "second" / DONE_NAME).read_text())["seconds"] == 8.0
    assert json.loads((tmp_path / "third" / DONE_NAME).read_text())["seconds"] == 0.0


def test_unknown_steps_are_refused(fake, tmp_path):
    recipe, _ = fake
    with pytest.raises(RecipeError, match=r"no step .nope.*first, second, third, last"):
        plan(recipe, FakeConfig(), tmp_path, until="nope")
    with pytest.raises(RecipeError, match="no step 'nope'"):
        plan(recipe, FakeConfig(), tmp_path, force=["nope"])


# ------------------------------------------------------------------ the named recipes


def test_only_runs_the_named_steps_once_their_needs_are_done(fake, tmp_path):
    recipe, calls = fake
    with pytest.raises(RecipeError, match=r"--only third: it needs first, which is not done"):
        quiet_run(recipe, FakeConfig(), tmp_path, only=["third"])
    assert calls.names == []
    quiet_run(recipe, FakeConfig(), tmp_path, until="first")
    calls.names.clear()
    lines = quiet_run(recipe, FakeConfig(), tmp_path, only=["third"])
    assert calls.names == ["third"]  # `second` is left for another run, `last` not planned
    assert lines[1] == "[2/4] second left out (--only)"
    assert not (tmp_path / "second").exists() and not (tmp_path / "last").exists()
    calls.names.clear()
    quiet_run(recipe, FakeConfig(), tmp_path)
    assert calls.names == ["second", "last"]
    with pytest.raises(RecipeError, match="no step 'fourth'"):
        quiet_run(recipe, FakeConfig(), tmp_path, only=["fourth"])


def test_a_step_running_in_another_process_is_refused(fake, tmp_path):
    """Two runs side by side (`--only`) never run one step twice: its LOCK is held."""
    import subprocess
    import sys

    recipe, calls = fake
    quiet_run(recipe, FakeConfig(), tmp_path, until="first")
    (tmp_path / "second").mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(tmp_path / 'second' / 'LOCK')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, b'4242')\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert lock_holder(tmp_path / "second") == "4242"  # what --dry-run shows
        assert lock_holder(tmp_path / "third") is None  # no LOCK file at all
        with pytest.raises(RecipeError, match=r"second is running in another process \(pid 4242"):
            quiet_run(recipe, FakeConfig(), tmp_path, only=["second"])
        assert calls.names == ["first"]
        assert not (tmp_path / "second" / STARTED_NAME).exists()
        quiet_run(recipe, FakeConfig(), tmp_path, only=["third"])  # another step runs
        with pytest.raises(RecipeError, match=r"--force would wipe .*second.*pid 4242"):
            quiet_run(recipe, FakeConfig(), tmp_path, force=["first"])  # second depends on it
        assert (tmp_path / "first" / DONE_NAME).is_file()  # nothing was wiped
        assert calls.names == ["first", "third"]
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(tmp_path / "second") is None  # the holder is gone: the lock with it
    quiet_run(recipe, FakeConfig(), tmp_path)
    assert calls.names == ["first", "third", "second", "last"]
