"""The codec trains through the shared engine: both optimizers step, checkpoints load back."""

import numpy as np
import pytest
import torch

from segue.codec import Codec
from segue.codec.config import DiscriminatorConfig, LossConfig
from segue.codec.load import load_codec
from segue.codec.train import (
    IGNORE,
    CodecDataConfig,
    CodecRunConfig,
    CodecTask,
    read_trained_codec_config,
    semantic_targets,
)
from segue.config import apply_overrides
from segue.data.manifest import ManifestEntry, write_manifest
from segue.errors import InputError
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


def test_semantic_targets_are_the_tokens_under_each_frames_middle():
    tokens = [np.arange(10), np.arange(100, 104)]  # 25 Hz: 40 ms a token
    # hop 320 at 16 kHz: 20 ms frames, middles at 10, 30, 50, ... ms of the crop
    out = semantic_targets(
        tokens,
        starts=torch.tensor([0.1, 0.05]),  # seconds into each file
        speeds=torch.tensor([1.0, 2.0]),  # the second crop plays its file at double speed
        lengths=torch.tensor([16000, 16000]),
        frames=6,
        hop=320,
        sample_rate=16000,
        token_rate=25.0,
    )
    # crop 0: file times 110, 130, 150, ... ms -> tokens 2, 3, 3, 4, 4, 5
    assert out[0].tolist() == [2, 3, 3, 4, 4, 5]
    # crop 1: file times 70, 110, 150, 190 ms, then past its 4 tokens (160 ms): ignored
    assert out[1].tolist() == [101, 102, 103, IGNORE, IGNORE, IGNORE]
    short = semantic_targets(tokens[:1], torch.tensor([0.0]), torch.tensor([1.0]),
                             torch.tensor([700]), 6, 320, 16000, 25.0)  # fmt: skip
    assert short[0].tolist() == [0, 0, IGNORE, IGNORE, IGNORE, IGNORE]  # past the crop's audio


def write_semantic_shards(manifest, out, skip: str | None = None):
    """Tokens that tell the files (tones) apart: file i says 2i for 0.5 s, then 2i + 1 (the
    half cannot be heard in a steady tone: the best cross-entropy is log 2)."""
    from segue.data.manifest import read_manifest
    from segue.data.shards import TokenShardWriter, merge_index

    writer = TokenShardWriter(out, kind="semantic", levels=1, vocab_size=10, frame_rate=25.0)
    for i, entry in enumerate(read_manifest(manifest).entries):
        if entry.path != skip:
            tokens = np.repeat([2 * i, 2 * i + 1], [12, 13])
            writer.add(entry.path, tokens[None], {"split": entry.split, "duration": 1.0})
    writer.flush()
    merge_index(out)
    return out


def test_level_0_learns_to_predict_the_semantic_tokens_of_its_frames(tone_manifest, tmp_path):
    shards = write_semantic_shards(tone_manifest, tmp_path / "semantic")
    config = apply_overrides(
        run_config(tone_manifest, steps=100),
        [f"semantic.shards={shards}", "semantic.weight=1.0", "train.batch_size=4",
         "model.loss.discriminator_warmup_steps=1000", "optim.lr=3e-3"],
    )  # fmt: skip
    trainer = Trainer(CodecTask(config), config, tmp_path / "run")
    history = []
    while trainer.step < config.optim.max_steps:
        history.append(trainer.train_step())
        trainer.step += 1
    trainer.save_checkpoint()
    trainer.close()
    first = np.mean([row["semantic"] for row in history[:10]])
    last = np.mean([row["semantic"] for row in history[-10:]])
    assert last < first - 0.4, (first, last)  # chance: log 10 = 2.3; the best: log 2 = 0.69
    accuracy = np.mean([row["semantic_accuracy"] for row in history[-10:]])
    assert accuracy > 0.2, accuracy  # chance 0.1, the best 0.5 (20 frames a step: noisy)
    # the head trains with the codec but is not part of it
    weights = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_000100").weights
    assert "semantic_head" in weights
    codec = load_codec(tmp_path / "run")
    assert not any("semantic" in k for k in codec.state_dict())
    # `first` is level 0's output: the decoded level-0 codes
    audio = torch.from_numpy(tone(0.2, freq=330))[None, None]
    out = codec.quantizer(codec.encoder(audio))
    torch.testing.assert_close(out.first, codec.quantizer.decode(out.codes[:, :1]))


def test_semantic_targets_refuse_what_cannot_work(tone_manifest, tmp_path):
    base = run_config(tone_manifest, steps=1)
    with pytest.raises(InputError, match=r"needs semantic\.shards"):
        CodecTask(apply_overrides(base, ["semantic.weight=1.0"]))
    with pytest.raises(InputError, match=">= 0"):
        CodecTask(apply_overrides(base, ["semantic.weight=-1.0"]))
    partial = write_semantic_shards(tone_manifest, tmp_path / "partial", skip="g1/a.wav")
    task = CodecTask(apply_overrides(base, [f"semantic.shards={partial}", "semantic.weight=1"]))
    with pytest.raises(InputError, match="no semantic tokens for 1 of 4 training files"):
        task.train_dataset()
    frozen = [f"semantic.shards={partial}", "semantic.weight=1", "frozen=[\"quantizer\"]",
              f"train.init_from={tmp_path}"]  # fmt: skip
    with pytest.raises(InputError, match="cannot be frozen"):
        CodecTask(apply_overrides(base, frozen))
