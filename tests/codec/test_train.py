"""The codec trains through the shared engine: both optimizers step, checkpoints load back."""

import numpy as np
import pytest
import torch

from segue.codec import Codec
from segue.codec.config import DiscriminatorConfig, LossConfig
from segue.codec.load import load_codec
from segue.codec.train import (
    CodecDataConfig,
    CodecRunConfig,
    CodecTask,
    read_trained_codec_config,
)
from segue.config import apply_overrides
from segue.data.manifest import ManifestEntry, write_manifest
from segue.train import Trainer
from segue.train.checkpoint import CheckpointError, load_checkpoint
from tests.codec.test_model import small_config
from tests.conftest import quick_run_overrides, tone, write


@pytest.fixture
def tone_manifest(tmp_path):
    entries = []
    for i, freq in enumerate((220, 330, 440, 550, 660)):
        write(tmp_path / f"g{i}/a.wav", tone(1.0, freq=freq))
        entries.append(
            ManifestEntry(f"g{i}/a.wav", 1.0, 16000, f"g{i}", split="valid" if i == 4 else "train")
        )
    write_manifest(tmp_path / "m.jsonl", entries)
    return tmp_path / "m.jsonl"


def run_config(manifest, steps=6) -> CodecRunConfig:
    model = small_config(
        loss=LossConfig(mel_windows=(64, 256), mel_bins=(10, 40), discriminator_warmup_steps=3),
        discriminator=DiscriminatorConfig(
            periods=(2,), period_channels=2, stft_windows=(128,), stft_channels=2
        ),
    )
    config = CodecRunConfig(
        model=model,
        data=CodecDataConfig(manifest=str(manifest), crop_seconds=0.1, valid_crop_seconds=0.2),
    )
    return apply_overrides(
        config,
        quick_run_overrides(steps),
    )


def test_codec_trains_with_warmup_then_adversarially(tone_manifest, tmp_path):
    config = run_config(tone_manifest)
    trainer = Trainer(CodecTask(config), config, tmp_path / "run")
    history = []
    while trainer.step < config.optim.max_steps:
        history.append(trainer.train_step())
        trainer.step += 1
    assert all(np.isfinite(v) for row in history for v in row.values())
    assert not any("discriminator" in k for k in history[0])  # warm-up: generator only
    assert any("discriminator" in k for k in history[-1]) and "adversarial" in history[-1]
    assert trainer.validate()["mel_distance"] > 0
    trainer.close()


def test_checkpoint_loads_as_a_codec(tone_manifest, tmp_path):
    config = run_config(tone_manifest, steps=3)
    trainer = Trainer(CodecTask(config), config, tmp_path / "run")
    trainer.fit()
    trainer.close()
    codec = load_codec(tmp_path / "run")
    assert isinstance(codec, Codec) and not codec.training
    state = trainer.raw_modules["codec"].state_dict()
    assert all(torch.equal(state[k], v) for k, v in codec.state_dict().items())
    codec.save_pretrained(tmp_path / "export")
    assert isinstance(load_codec(tmp_path / "export"), Codec)
    with pytest.raises(FileNotFoundError, match="neither"):
        load_codec(tmp_path)


def test_one_checkpoint_of_a_run_loads_as_that_steps_codec(tone_manifest, tmp_path):
    config = run_config(tone_manifest, steps=6)  # checkpoints at steps 3 and 6
    trainer = Trainer(CodecTask(config), config, tmp_path / "run")
    trainer.fit()
    trainer.close()
    step3 = tmp_path / "run" / "checkpoints" / "step_000003"
    held = load_checkpoint(step3).weights
    held = held.get("codec.ema", held["codec"])
    codec = load_codec(step3)
    assert all(torch.equal(held[k], v) for k, v in codec.state_dict().items())
    final = load_codec(tmp_path / "run").state_dict()
    assert not all(torch.equal(final[k], v) for k, v in codec.state_dict().items())
    assert read_trained_codec_config(step3) == codec.config
    (step3 / "manifest.json").unlink()  # an incomplete checkpoint is refused, not guessed at
    with pytest.raises(CheckpointError, match="manifest"):
        load_codec(step3)
    with pytest.raises(CheckpointError, match="manifest"):
        read_trained_codec_config(step3)


def test_fine_tuning_starts_from_the_saved_codec_with_fresh_discriminators(
    tone_manifest, tmp_path
):
    """train.init_from: the saved codec's shape and weights, the run's losses and
    discriminators (fresh); an hf: codec cannot be trained further."""
    base = run_config(tone_manifest, steps=3)
    trainer = Trainer(CodecTask(base), base, tmp_path / "base")
    trainer.fit()
    trainer.close()
    load_codec(tmp_path / "base").save_pretrained(tmp_path / "export")
    config = apply_overrides(
        CodecRunConfig(data=base.data, train=base.train),  # the default codec: not the saved one
        [f"train.init_from={tmp_path / 'export'}", "model.loss.discriminator_warmup_steps=1"],
    )
    task = CodecTask(config)
    assert config.model.channels == base.model.channels
    assert config.model.loss.discriminator_warmup_steps == 1  # the run's
    assert config.model.discriminator == CodecRunConfig().model.discriminator  # the run's
    tuned = Trainer(task, config, tmp_path / "tuned")
    saved = load_codec(tmp_path / "export").state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in tuned.raw_modules["codec"].state_dict().items())
    tuned.close()
    with pytest.raises(ValueError, match="not a segue codec"):
        CodecTask(apply_overrides(CodecRunConfig(data=base.data), ["train.init_from=hf:x"]))


def test_a_frozen_encoder_and_quantizer_keep_the_codes_while_the_decoder_learns(
    tone_manifest, tmp_path
):
    """frozen=["encoder", "quantizer"] (fine-tuning the decoder of a codec LMs were trained on):
    after training, every encoder and quantizer tensor (the EMA codebooks included) is the
    saved codec's, so every sound gets the same codes; the decoder has moved."""
    base = run_config(tone_manifest, steps=3)
    trainer = Trainer(CodecTask(base), base, tmp_path / "base")
    trainer.fit()
    trainer.close()
    load_codec(tmp_path / "base").save_pretrained(tmp_path / "export")
    saved = load_codec(tmp_path / "export")
    config = apply_overrides(
        run_config(tone_manifest, steps=4),
        [f"train.init_from={tmp_path / 'export'}", 'frozen=["encoder", "quantizer"]',
         "model.quantizer_dropout=0.5"],
    )  # fmt: skip
    tuned = Trainer(CodecTask(config), config, tmp_path / "tuned")
    tuned.fit()
    tuned.close()
    after = load_codec(tmp_path / "tuned")
    before, now = saved.state_dict(), after.state_dict()
    for key, value in now.items():
        same = torch.equal(value, before[key])
        assert same == (not key.startswith("decoder.")), key
    audio = torch.from_numpy(tone(1.0, freq=300.0))[None]
    assert torch.equal(saved.encode(audio), after.encode(audio))
    with pytest.raises(ValueError, match="not parts that can be frozen"):
        CodecTask(apply_overrides(run_config(tone_manifest), ['frozen=["decoder"]']))
    with pytest.raises(ValueError, match="init-from"):
        CodecTask(apply_overrides(run_config(tone_manifest), ['frozen=["encoder"]']))


def test_training_needs_a_manifest():
    with pytest.raises(ValueError, match="manifest"):
        CodecTask(CodecRunConfig())


def test_bad_files_are_found_before_training_naming_the_manifest_line(tone_manifest, capsys):
    """A missing file used to stop the training at the first batch that reached it."""
    from segue.cli import main

    (tone_manifest.parent / "g2" / "a.wav").unlink()
    (tone_manifest.parent / "g3" / "a.wav").write_bytes(b"not audio")
    out = str(tone_manifest.parent / "run")
    sets = [x for o in quick_run_overrides(1) for x in ("--set", o)]
    argv = ["codec", "train", "--manifest", str(tone_manifest), "--out", out, *sets]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "2 unusable file(s)" in error and "data.skip_missing=true" in error
    assert "m.jsonl:3: " in error and "file not found" in error
    assert "m.jsonl:4: " in error and "not a readable audio file" in error
    assert main([*argv, "--set", "data.skip_missing=true"]) == 0
    printed = capsys.readouterr().out
    assert "warning: skipped" in printed and "m.jsonl:3" in printed


def test_bad_valid_files_are_found_before_training_too(tone_manifest, capsys):
    """The valid split's files were not checked, and any error building it was taken for
    'no valid split' (validation silently off)."""
    from segue.cli import main

    (tone_manifest.parent / "g4" / "a.wav").unlink()  # g4 is the valid split
    out = str(tone_manifest.parent / "run")
    sets = [x for o in quick_run_overrides(1) for x in ("--set", o)]
    argv = ["codec", "train", "--manifest", str(tone_manifest), "--out", out, *sets]
    assert main(argv) == 2
    assert "m.jsonl:5: " in capsys.readouterr().err
