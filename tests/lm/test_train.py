"""Each stage trains through the shared engine on synthetic shards; runs load back as stages."""

import json
import math
import shutil
from dataclasses import replace

import pytest
import torch

from segue.config import apply_overrides
from segue.errors import InputError
from segue.lm.config import LMConfig
from segue.lm.evaluate import evaluate_lm
from segue.lm.stages import load_lm
from segue.lm.train import TOKEN_ROWS, LMRunConfig, LMTask, build_dataset, run_config_for
from segue.train import Trainer
from segue.train.checkpoint import latest_checkpoint
from tests.conftest import quick_run_overrides

WINDOWS = {"semantic": (1.2, 0.6), "coarse": (0.4, 0.2), "fine": (0.4, 0.2)}


def tiny_run(stage, shards, steps=80, **overrides) -> LMRunConfig:
    config = run_config_for(stage, semantic_shards=str(shards[0]), acoustic_shards=str(shards[1]))
    config.model = LMConfig(n_layer=2, n_head=2, d_model=32)
    config.stage.window_seconds, config.stage.prompt_seconds = WINDOWS[stage]
    settings = quick_run_overrides(
        steps, batch_size=8, every=steps, warmup=3, log_every=10, lr=3e-3
    )
    return apply_overrides(config, settings + [f"{k}={v}" for k, v in overrides.items()])


@pytest.mark.parametrize("stage", ["semantic", "coarse", "fine"])
def test_stage_learns_its_synthetic_structure(stage, shards, tmp_path):
    config = tiny_run(stage, shards)
    trainer = Trainer(LMTask(config), config, tmp_path / stage)
    before = trainer.validate()["loss"]
    trainer.fit()
    last = trainer.validate()
    after = last["loss"]
    trainer.close()
    assert after < 0.7 * before, (before, after)
    # the run folder loads back as a stage with the trained weights and the shards' spaces
    lm = load_lm(tmp_path / stage)
    assert lm.stage.stage == stage and lm.model.config.vocab_size == lm.layout.vocab_size
    state = trainer.raw_modules["model"].state_dict()
    assert all(torch.equal(state[k], v) for k, v in lm.model.state_dict().items())
    report = evaluate_lm(lm, build_dataset(config, lm.layout, "valid", seed=1234))
    assert report.level_loss == pytest.approx(last["level_loss"], rel=0.05)
    if config.softmax == "full":  # the tiny preset: semantic (its acoustic stages: "level")
        assert report.loss == pytest.approx(after, rel=0.05)
    assert report.loss < report.level_unigram_entropy <= report.unigram_entropy + 1e-9
    assert report.level_loss < report.level_unigram_entropy  # what sampling draws from, too
    assert json.loads(report.to_json(stage="coarse")) == {"stage": "coarse", **report.to_dict()}
    # validation's semantic gain (the coarse stage's only): what `lm eval --mismatched-semantic`
    # measures on the same windows; the synthetic coarse codes follow the semantic tokens
    assert ("semantic_gain" in last) == (stage == "coarse")
    if stage == "coarse":
        shifted = build_dataset(config, lm.layout, "valid", seed=1234, semantic_shift=37)
        gain = evaluate_lm(lm, shifted).level_loss - report.level_loss
        assert last["semantic_gain"] == pytest.approx(gain, rel=0.05) and gain > 0.1, last


@pytest.mark.parametrize("stage", ["coarse", "fine"])
def test_level_softmax_trains_on_the_ranges_sampling_draws_from(stage, shards, tmp_path):
    config = tiny_run(stage, shards, softmax="level")
    task = LMTask(config)
    layout = task.layout
    levels = range(layout.first_level, layout.first_level + layout.n_target_levels)
    assert task.ranges == [layout.level_range(q) for q in levels]  # EOS: in none of them
    trainer = Trainer(task, config, tmp_path / stage)
    before = trainer.validate()["loss"]
    trainer.fit()
    last = trainer.validate()
    after = last["loss"]
    trainer.close()
    assert after < 0.7 * before, (before, after)
    assert before < 1.05 * math.log(layout.acoustic_vocab)  # a softmax over one level's codes
    assert last["level_loss"] == after  # the objective is what sampling draws from
    full = tiny_run(stage, shards, softmax="full")  # the classic one reports it beside its loss
    classic = Trainer(LMTask(full), full, tmp_path / "full")
    numbers = classic.validate()
    classic.close()
    assert numbers["level_loss"] < numbers["loss"]
    saved = json.loads((tmp_path / stage / "config.json").read_text())
    assert saved["softmax"] == "level"
    with pytest.raises(ValueError, match="softmax"):
        apply_overrides(run_config_for(stage), ["softmax=levels"])


def test_token_spaces_come_from_the_shards(shards):
    config = tiny_run("coarse", shards)
    task = LMTask(config)
    s = config.stage
    assert (s.semantic_vocab, s.acoustic_vocab, s.n_coarse, s.n_levels) == (16, 8, 2, 4)
    assert config.model.vocab_size == 16 + 2 * 8 + 4
    assert config.model.max_seq_len == task.layout.max_length == 10 + 1 + 20 * 2 + 1


def test_missing_or_mismatched_shards_are_clear_errors(shards):
    with pytest.raises(ValueError, match="needs acoustic token shards"):
        LMTask(run_config_for("fine"))
    config = run_config_for("semantic", semantic_shards=str(shards[1]))
    with pytest.raises(ValueError, match="'acoustic' shards, expected 'semantic'"):
        LMTask(config)
    config = tiny_run("semantic", shards)
    config.stage.semantic_vocab = 99
    with pytest.raises(ValueError, match="semantic_vocab=99"):
        LMTask(config)


def test_derived_model_sizes_cannot_be_set_by_hand(shards):
    """`--set model.vocab_size=10` used to be silently overwritten by the layout's."""
    config = tiny_run("coarse", shards)
    config.model.vocab_size = 10
    with pytest.raises(
        ValueError,
        match=r"model.vocab_size=10 but the stage's token layout "
        r"needs 36: leave it unset",
    ):
        LMTask(config)
    config = tiny_run("coarse", shards)
    config.model.max_seq_len = 1
    with pytest.raises(ValueError, match=r"model.max_seq_len=1"):
        LMTask(config)
    LMTask(tiny_run("coarse", shards))  # its own values (0, then the layout's) are fine


def test_a_run_saved_before_segue_nn_loads_and_resumes(shards, tmp_path):
    """Checkpoints written when the blocks' weights were blocks.i.{qkv, proj, up, down} (before
    they became segue.nn Blocks: blocks.i.attn.qkv, ...) load as a stage and resume exactly like
    a run saved under today's names: weights, EMA and the optimizer's parameter names."""
    import re
    import shutil

    from segue.train.checkpoint import load_latest, save_checkpoint

    ema = {"train.ema_decay": 0.9}
    config = tiny_run("semantic", shards, steps=3, **ema)
    trainer = Trainer(LMTask(config), config, tmp_path / "new")
    trainer.fit()
    trainer.close()
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    root = tmp_path / "old" / "checkpoints"
    saved = load_latest(root)
    legacy = lambda key: re.sub(r"(blocks\.\d+\.)(attn|mlp)\.", r"\1", key)  # noqa: E731
    assert set(saved.weights) == {"model", "model.ema"}
    weights = {n: {legacy(k): v for k, v in s.items()} for n, s in saved.weights.items()}
    assert "blocks.0.qkv.weight" in weights["model.ema"]
    for optimizer in saved.objects["optim"].values():
        optimizer["optimizer"]["param_names"] = [
            legacy(n) for n in optimizer["optimizer"]["param_names"]
        ]
    save_checkpoint(root, saved.step, weights=weights, objects=saved.objects, config=saved.config)
    new, old = load_lm(tmp_path / "new").model.state_dict(), load_lm(tmp_path / "old").model
    assert all(torch.equal(v, old.state_dict()[k]) for k, v in new.items())
    longer = tiny_run("semantic", shards, steps=5, **ema)
    runs = [Trainer(LMTask(longer), longer, tmp_path / n, resume=True) for n in ("new", "old")]
    for trainer in runs:
        assert trainer.fit().status == "completed" and trainer.step == 5
        trainer.close()
    a, b = (t.raw_modules["model"].state_dict() for t in runs)
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def test_fine_tuning_starts_from_the_saved_lm_and_resumes_from_its_own_checkpoints(
    shards, tmp_path, capsys
):
    """train.init_from: the saved LM's shape, stage and weights (an exported folder or a run
    folder); the run's dropout; a resumed run continues from its own checkpoint."""
    base = tiny_run("coarse", shards, steps=30)
    trainer = Trainer(LMTask(base), base, tmp_path / "base")
    trainer.fit()
    trained = trainer.validate()["loss"]
    trainer.close()
    load_lm(tmp_path / "base").save_pretrained(tmp_path / "exported")

    def fine_tune(out, steps, source="exported", resume=False):
        config = run_config_for(  # the tiny preset's shape and windows: not the saved ones
            "coarse", semantic_shards=str(shards[0]), acoustic_shards=str(shards[1])
        )
        settings = quick_run_overrides(steps, batch_size=8, every=3, warmup=0, lr=1e-4)
        config = apply_overrides(
            config, [*settings, f"train.init_from={tmp_path / source}", "model.dropout=0"]
        )
        task = LMTask(config)
        return Trainer(task, config, tmp_path / out, resume=resume), config

    for source in ("exported", "base"):
        trainer, config = fine_tune(f"from-{source}", 1, source)
        assert config.stage == base.stage
        assert config.model == replace(base.model, dropout=0.0, attention_dropout=0.0)
        assert trainer.validate()["loss"] == pytest.approx(trained, rel=1e-5)
        trainer.close()

    capsys.readouterr()
    fresh, _ = fine_tune("fresh", 1, resume=True)  # --resume with nothing to resume: says what
    assert f"starting from the weights of {tmp_path / 'exported'}" in capsys.readouterr().out
    fresh.close()

    straight, _ = fine_tune("straight", 6)
    straight.fit()
    straight.close()
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")  # as if stopped at step 3
    for checkpoint in (tmp_path / "resumed" / "checkpoints").glob("step_000006*"):
        shutil.rmtree(checkpoint)
    (tmp_path / "resumed" / "checkpoints" / "latest").unlink(missing_ok=True)
    resumed, _ = fine_tune("resumed", 6, resume=True)
    assert resumed.step == 3
    resumed.fit()
    resumed.close()
    a, b = (t.raw_modules["model"].state_dict() for t in (straight, resumed))
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    assert json.loads((tmp_path / "resumed" / "config.json").read_text())["train"][
        "init_from"
    ] == str(tmp_path / "exported")

    wrong = apply_overrides(tiny_run("fine", shards), [f"train.init_from={tmp_path / 'base'}"])
    with pytest.raises(ValueError, match="is a coarse LM, this run trains a fine one"):
        LMTask(wrong)


def test_fine_tuning_reads_the_saved_weights_only_when_it_starts_from_them(
    shards, tmp_path, monkeypatch
):
    """Making the task adopts the saved LM's configs alone (`read_lm_config`: an exported
    folder's config.json + stage.json, a run folder's config.json); the weights are read once,
    when the trainer starts from them, and not at all when the run resumes from its own
    checkpoints (for a paper-sized LM that is a load of a GB saved per restart)."""
    import segue.lm.train as lm_train
    from segue.lm.stages import read_lm_config

    base = tiny_run("coarse", shards, steps=3)
    Trainer(LMTask(base), base, tmp_path / "base").fit()
    load_lm(tmp_path / "base").save_pretrained(tmp_path / "exported")
    one = latest_checkpoint(tmp_path / "base" / "checkpoints")  # RUN/checkpoints/step_N
    for source in (tmp_path / "base", tmp_path / "exported", one):
        assert read_lm_config(source) == (base.model, base.stage)
    a, b = (load_lm(p).model.state_dict() for p in (one, tmp_path / "exported"))
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    with pytest.raises(FileNotFoundError, match="neither an exported LM"):
        read_lm_config(tmp_path)
    reads = []
    real = lm_train.load_lm
    monkeypatch.setattr(lm_train, "load_lm", lambda source: reads.append(source) or real(source))

    def tuned(resume: bool) -> Trainer:
        config = tiny_run("coarse", shards, steps=2)
        config = apply_overrides(config, [f"train.init_from={tmp_path / 'base'}"])
        before = len(reads)
        task = LMTask(config)
        assert len(reads) == before  # the shape is adopted from the configs alone
        assert config.model == replace(base.model, dropout=config.model.dropout)
        return Trainer(task, config, tmp_path / "tuned", resume=resume)

    trainer = tuned(resume=False)
    assert [str(r) for r in reads] == [str(tmp_path / "base")]
    trainer.fit()
    trainer.close()
    tuned(resume=True).close()
    assert len(reads) == 1  # the run's own checkpoint, not the saved LM


def test_fine_tuning_on_another_semantic_tokenizer_keeps_all_but_its_rows(shards, tmp_path):
    """new_semantic_tokens: the shards' semantic vocabulary; blocks, acoustic and special rows
    from the saved LM; the semantic code rows fresh. Without it the mismatch is an error."""
    from tests.lm.synthetic import relabel_semantic

    base = tiny_run("coarse", shards, steps=3)
    trainer = Trainer(LMTask(base), base, tmp_path / "base")
    trainer.fit()
    trainer.close()
    saved = load_lm(tmp_path / "base")
    other = relabel_semantic(shards[0], tmp_path / "other", vocab_size=20)
    overrides = [f"train.init_from={tmp_path / 'base'}", f"data.semantic_shards={other}"]
    with pytest.raises(ValueError, match="semantic_vocab=16"):
        LMTask(apply_overrides(tiny_run("coarse", shards), overrides))
    config = apply_overrides(tiny_run("coarse", shards), [*overrides, "new_semantic_tokens=true"])
    task = LMTask(config)
    assert config.stage.semantic_vocab == 20 and config.model.vocab_size == 20 + 2 * 8 + 4
    tuned = Trainer(task, config, tmp_path / "tuned")
    state, old = tuned.raw_modules["model"].state_dict(), saved.model.state_dict()
    tuned.close()
    assert all(torch.equal(state[k], v) for k, v in old.items() if k not in TOKEN_ROWS)
    for name in TOKEN_ROWS:  # the acoustic codes and specials moved up by 20 - 16 ids
        assert torch.equal(state[name][20:], old[name][16:])
        assert not torch.equal(state[name][:16], old[name][:16])  # semantic codes: fresh


def test_input_dropout_hides_the_past_never_the_condition_nor_the_targets(shards):
    task = LMTask(tiny_run("coarse", shards, input_dropout=0.5))
    layout = task.layout
    batch = next(iter(torch.utils.data.DataLoader(task.train_dataset(), batch_size=8)))
    torch.manual_seed(0)
    hidden = task.hide_inputs(batch["input"])
    start = layout.prefix_length
    assert torch.equal(hidden[:, :start], batch["input"][:, :start])  # semantic tokens and SEP
    changed = hidden[:, start:] != batch["input"][:, start:]
    real = batch["input"][:, start:] != layout.pad
    assert (hidden[:, start:][changed] == layout.pad).all()
    assert 0.4 < changed.sum() / real.sum() < 0.6
    off = LMTask(tiny_run("coarse", shards))
    assert off.hide_inputs(batch["input"]) is batch["input"]
    with pytest.raises(InputError, match="input_dropout"):
        tiny_run("coarse", shards, input_dropout=1.0)
