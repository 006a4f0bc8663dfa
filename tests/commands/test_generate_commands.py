"""`segue continue | generate | resynth | bundle` through `segue.cli.main`, on a tiny bundle."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from segue import cli
from segue.commands import generate
from segue.pipeline import AudioLM
from tests.conftest import write
from tests.test_pipeline import RATE, speech_like, tiny_audiolm

QUIET = ["--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_audiolm().save_pretrained(tmp_path_factory.mktemp("cli_bundle") / "tiny")


@pytest.fixture(scope="module")
def prompt(tmp_path_factory):
    return write(tmp_path_factory.mktemp("cli_audio") / "prompt.wav", speech_like(0.5)[0].numpy())


def seconds_of(path) -> float:
    info = sf.info(str(path))
    assert info.samplerate == RATE
    return info.frames / RATE


def test_continue_writes_prompt_plus_seconds_and_a_plot(bundle, prompt, tmp_path, capsys):
    out = tmp_path / "out.wav"
    argv = ["continue", str(prompt), "--seconds", "0.6", "--out", str(out), "--model", str(bundle)]
    assert cli.main([*argv, "--seed", "3", "--plot", "--temperature-coarse", "0.9", *QUIET]) == 0
    assert seconds_of(out) == pytest.approx(1.1)
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "0.50 s prompt + 0.6 s continuation" in printed and "out.png" in printed
    first = out.read_bytes()
    assert cli.main([*argv, "--seed", "3", "--temperature-coarse", "0.9", *QUIET]) == 0
    assert out.read_bytes() == first  # same seed, same file
    assert cli.main([*argv, "--seed", "4", *QUIET]) == 0
    assert out.read_bytes() != first


def test_generate_and_resynth(bundle, prompt, tmp_path):
    out = tmp_path / "gen.flac"
    model = ["--model", str(bundle), *QUIET]
    assert cli.main(["generate", "--seconds", "0.4", "--out", str(out), *model]) == 0
    assert seconds_of(out) == pytest.approx(0.4)
    voice = write(tmp_path / "voice.wav", 0.5 * speech_like(0.3)[0].numpy())
    out = tmp_path / "re.wav"
    argv = ["resynth", str(prompt), "--voice", str(voice), "--out", str(out), "--plot", *model]
    assert cli.main([*argv, "--top-k-fine", "4"]) == 0
    assert seconds_of(out) == pytest.approx(0.5)
    assert (tmp_path / "re.png").is_file()


def test_bundle_command_assembles_exported_parts(tmp_path, capsys):
    parts = tiny_audiolm(seed=1)
    parts.codec.save_pretrained(tmp_path / "codec")
    parts.tokenizer.save(tmp_path / "tok")
    for name in ("semantic_lm", "coarse_lm", "fine_lm"):
        getattr(parts, name).save_pretrained(tmp_path / name)
    out = tmp_path / "bundle"
    argv = ["bundle", "--codec", str(tmp_path / "codec"), "--semantic", str(tmp_path / "tok")]
    for name in ("semantic", "coarse", "fine"):
        argv += [f"--{name}-lm", str(tmp_path / f"{name}_lm")]
    assert cli.main([*argv, "--out", str(out), "--info", "corpus=test"]) == 0
    assert "prompts up to 1.96 s" in capsys.readouterr().out
    model = AudioLM.from_pretrained(out)
    assert model.info == {"corpus": "test"}
    audio = speech_like(0.4)
    expected = parts.continue_(audio, 0.2, seed=0, progress=False)
    assert torch.equal(model.continue_(audio, 0.2, seed=0, progress=False), expected)
    assert cli.main([*argv, "--out", str(out), "--info", "oops"]) == 2


def test_missing_default_model_says_how_to_make_one(monkeypatch, prompt, tmp_path, capsys):
    monkeypatch.setattr(generate, "DEFAULT_MODEL", tmp_path / "assets" / "speech-tiny")
    out = str(tmp_path / "o.wav")
    assert cli.main(["continue", str(prompt), "--seconds", "1", "--out", out, *QUIET]) == 2
    error = capsys.readouterr().err
    assert str(tmp_path / "assets" / "speech-tiny") in error
    assert "packaged default model" in error and "segue bundle" in error


def test_default_model_lives_in_the_package():
    assert generate.DEFAULT_MODEL.parts[-3:] == ("segue", "assets", "speech-tiny")


@pytest.mark.parametrize(
    ("make", "seconds", "message"),
    [
        (None, "1", "file not found"),
        (lambda p: p.write_bytes(b""), "1", "empty file"),
        (lambda p: write(p, np.zeros(8000, np.float32)), "1", "prompt is silent"),
        (
            lambda p: write(p, np.full(8000, np.nan, np.float32), subtype="FLOAT"),
            "1",
            "NaN or infinite",
        ),
        (lambda p: write(p, speech_like(2.5)[0].numpy()), "1", "fills the semantic LM's context"),
        (lambda p: write(p, speech_like(0.5)[0].numpy()), "0", "seconds must be > 0"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(bundle, tmp_path, capsys, make, seconds, message):
    path = tmp_path / "in.wav"
    if make:
        make(path)
    out = str(tmp_path / "o.wav")
    argv = ["continue", str(path), "--seconds", seconds, "--out", out, "--model", str(bundle)]
    assert cli.main([*argv, *QUIET]) == 2
    error = capsys.readouterr().err
    assert error.startswith("segue: error:") and message in error


def test_bad_options_exit_2(bundle, prompt, tmp_path, capsys):
    model = ["--model", str(bundle), *QUIET]
    out = str(tmp_path / "o.mp3")
    assert cli.main(["generate", "--seconds", "1", "--out", out, *model]) == 2
    assert "--out must end in .wav or .flac" in capsys.readouterr().err
    out = str(tmp_path / "o.wav")
    assert cli.main(["generate", "--seconds", "1", "--out", out, "--top-p-fine", "2", *model]) == 2
    assert "top_p must be in (0, 1]" in capsys.readouterr().err
    broken = tmp_path / "broken"
    assert cli.main(["generate", "--seconds", "1", "--out", out, "--model", str(broken)]) == 2
    assert "no model bundle there (--model)" in capsys.readouterr().err


def test_bundle_with_soundstorm_and_acoustic_option(bundle, prompt, tmp_path, capsys):
    from tests.test_pipeline import tiny_soundstorm

    parts = AudioLM.from_pretrained(bundle)
    tiny_soundstorm().save_pretrained(tmp_path / "storm")
    argv = ["bundle", "--codec", str(bundle / "codec"), "--semantic", str(bundle / "semantic")]
    for name in ("semantic", "coarse", "fine"):
        argv += [f"--{name}-lm", str(bundle / f"{name}_lm")]
    out = tmp_path / "storm_bundle"
    assert cli.main([*argv, "--soundstorm", str(tmp_path / "storm"), "--out", str(out)]) == 0
    assert "with SoundStorm" in capsys.readouterr().out
    assert parts.soundstorm is None and AudioLM.from_pretrained(out).soundstorm is not None
    model = ["--model", str(out), "--acoustic", "soundstorm", *QUIET]
    wav = tmp_path / "c.wav"
    assert cli.main(["continue", str(prompt), "--seconds", "0.2", "--out", str(wav), *model]) == 0
    assert seconds_of(wav) == pytest.approx(0.7)
    assert cli.main(["generate", "--seconds", "0.3", "--out", str(wav), *model]) == 0
    assert seconds_of(wav) == pytest.approx(0.3)
    assert cli.main(["resynth", str(prompt), "--out", str(wav), *model]) == 0
    assert seconds_of(wav) == pytest.approx(0.5)
    without = ["--model", str(bundle), "--acoustic", "soundstorm", *QUIET]
    assert cli.main(["generate", "--seconds", "0.3", "--out", str(wav), *without]) == 2
    assert "needs a SoundStorm part" in capsys.readouterr().err


def test_out_is_never_an_input_a_folder_or_unwritable(bundle, prompt, tmp_path, capsys):
    """Checked before any compute: the input is never replaced, nothing half-written is left."""
    import os
    import shutil

    model = ["--model", str(bundle), *QUIET]
    own = tmp_path / "mine.wav"
    shutil.copy(prompt, own)
    before = own.read_bytes()
    link = tmp_path / "link.wav"
    os.symlink(own, link)
    cases = [
        (["continue", str(own), "--seconds", "0.2", "--out", str(own)], "--out is the input"),
        (["resynth", str(own), "--out", str(link)], "--out is the input"),
        (["resynth", str(prompt), "--voice", str(own), "--out", str(own)], "--out is the input"),
        (["generate", "--seconds", "0.2", "--out", str(tmp_path / "dir.wav")], "is a folder"),
        (["generate", "--seconds", "0.2", "--out", str(own / "x.wav")], "cannot write there"),
    ]
    (tmp_path / "dir.wav").mkdir()
    for argv, message in cases:
        assert cli.main([*argv, *model]) == 2, argv
        assert message in capsys.readouterr().err
    assert own.read_bytes() == before
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_resynth_of_a_few_samples_and_huge_seconds_are_refused(bundle, tmp_path, capsys):
    model = ["--model", str(bundle), *QUIET]
    tiny = write(tmp_path / "one.wav", np.array([0.5], np.float32))
    assert cli.main(["resynth", str(tiny), "--out", str(tmp_path / "o.wav"), *model]) == 2
    assert "shorter than one semantic frame" in capsys.readouterr().err
    out = str(tmp_path / "o.wav")
    assert cli.main(["generate", "--seconds", "1e9", "--out", out, *model]) == 2
    error = capsys.readouterr().err
    assert "at most 600" in error and "continue the output" in error


def test_a_prompt_past_full_scale_is_scaled_with_a_warning(bundle, tmp_path):
    loud = write(tmp_path / "loud.wav", 95.0 * speech_like(0.5)[0].numpy(), subtype="FLOAT")
    out = tmp_path / "o.wav"
    argv = ["continue", str(loud), "--seconds", "0.2", "--out", str(out), "--model", str(bundle)]
    with pytest.warns(UserWarning, match="outside \\[-1, 1\\]: scaled to a peak of 0.95"):
        assert cli.main([*argv, *QUIET]) == 0
    audio, _ = sf.read(str(out))
    assert np.mean(np.abs(audio) >= 0.999) < 0.01  # not hard-clipped


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--device", "banana", "not a device name"),
    ("--device", "cuda", "no CUDA device"),
    ("--device", "cuda:7", "CUDA device"),
    ("--threads", "-3", "must be >= 1"),
    ("--threads", "two", "not a whole number"),
])
def test_bad_device_or_threads_exit_2_before_loading(bundle, tmp_path, capsys, option, value,
                                                      message):
    if value.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = str(tmp_path / "o.wav")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["generate", "--seconds", "0.2", "--out", out, "--model", str(bundle),
                  option, value])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
