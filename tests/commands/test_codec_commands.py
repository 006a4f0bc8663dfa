"""`segue codec encode|decode|eval|export|tokenize` on a small random codec saved by the test."""

import json

import numpy as np
import pytest
import torch

from segue import audio
from segue.cli import main
from segue.codec import Codec
from segue.data.manifest import ManifestEntry, write_manifest
from segue.data.shards import TokenShards
from tests.codec.test_model import small_config
from tests.conftest import tone, write


@pytest.fixture
def codec_dir(tmp_path):
    torch.manual_seed(0)
    return Codec(small_config()).save_pretrained(tmp_path / "codec")


@pytest.fixture
def manifest(tmp_path):
    entries = []
    for i in range(3):
        write(tmp_path / f"c/{i}.wav", tone(0.5 + 0.25 * i, freq=200 * (i + 1)))
        entries.append(ManifestEntry(f"c/{i}.wav", 0.5 + 0.25 * i, 16000, f"g{i}", split="test"))
    write_manifest(tmp_path / "m.jsonl", entries)
    return tmp_path / "m.jsonl"


def test_encode_then_decode(codec_dir, tmp_path):
    wav = write(tmp_path / "in.wav", tone(0.5, 22050), 22050)  # resampled to the codec's rate
    assert (
        main(
            [
                "codec",
                "encode",
                str(wav),
                str(tmp_path / "codes.npy"),
                "--checkpoint",
                str(codec_dir),
            ]
        )
        == 0
    )
    codes = np.load(tmp_path / "codes.npy")
    assert codes.shape == (4, 25)
    assert (
        main(
            [
                "codec",
                "decode",
                str(tmp_path / "codes.npy"),
                str(tmp_path / "out.wav"),
                "--checkpoint",
                str(codec_dir),
            ]
        )
        == 0
    )
    assert audio.info(tmp_path / "out.wav").num_frames == 25 * 320
    expected = Codec.from_pretrained(codec_dir).decode(
        torch.from_numpy(codes.astype(np.int64))[None]
    )
    np.testing.assert_allclose(audio.load(tmp_path / "out.wav"), expected[0].numpy(), atol=1e-4)


def test_eval_prints_a_table_and_writes_json(codec_dir, manifest, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert (
        main(
            [
                "codec",
                "eval",
                "--checkpoint",
                str(codec_dir),
                "--manifest",
                str(manifest),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "3 files, 4 levels" in printed and "si_snr" in printed
    report = json.loads(out.read_text())
    assert report["bitrate"] == 4 * 5 * 50 and len(report["rows"]) == 3
    assert len(report["codebooks"]["perplexity"]) == 4


def test_tokenize_matches_single_file_encoding(codec_dir, manifest, tmp_path):
    assert (
        main(
            [
                "codec",
                "tokenize",
                "--checkpoint",
                str(codec_dir),
                "--manifest",
                str(manifest),
                "--out",
                str(tmp_path / "shards"),
            ]
        )
        == 0
    )
    shards = TokenShards(tmp_path / "shards")
    codec = Codec.from_pretrained(codec_dir)
    assert shards.meta["n_coarse"] == 2 and shards.levels == 4 and len(shards) == 3
    for i, entry in enumerate(shards.entries):
        wav = audio.load(tmp_path / entry.key, 16000)
        np.testing.assert_array_equal(
            shards.tokens(i), codec.encode(torch.from_numpy(wav)[None])[0]
        )


def test_bad_inputs_are_one_line_errors(codec_dir, tmp_path, capsys):
    (tmp_path / "bad.npy").write_bytes(b"nope")
    assert (
        main(
            [
                "codec",
                "decode",
                str(tmp_path / "bad.npy"),
                str(tmp_path / "o.wav"),
                "--checkpoint",
                str(codec_dir),
            ]
        )
        == 2
    )
    assert "cannot read codes" in capsys.readouterr().err
    assert (
        main(
            [
                "codec",
                "encode",
                str(tmp_path / "missing.wav"),
                str(tmp_path / "c.npy"),
                "--checkpoint",
                str(codec_dir),
            ]
        )
        == 2
    )
    assert "file not found" in capsys.readouterr().err
    assert (
        main(["codec", "export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    )
    assert "neither" in capsys.readouterr().err


@pytest.mark.parametrize("levels", ["-1", "-2", "0", "99"])
def test_n_quantizers_out_of_range_is_refused(codec_dir, tmp_path, capsys, levels):
    wav = write(tmp_path / "in.wav", tone(0.5))
    argv = ["codec", "encode", str(wav), str(tmp_path / "c.npy"), "--checkpoint", str(codec_dir)]
    assert main([*argv, "--n-quantizers", levels]) == 2
    assert "n_quantizers must be in [1, 4]" in capsys.readouterr().err
    assert not (tmp_path / "c.npy").exists()
    assert main([*argv, "--n-quantizers", "2"]) == 0
    assert np.load(tmp_path / "c.npy").shape[0] == 2


def test_outputs_must_name_a_code_format_and_not_the_input(codec_dir, tmp_path, capsys):
    wav = write(tmp_path / "in.wav", tone(0.5))
    for out, message in ((tmp_path / "out.wav", "must end in .npy or .pt or .safetensors"),):
        assert main(["codec", "encode", str(wav), str(out), "--checkpoint", str(codec_dir)]) == 2
        assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("out.wav*"))  # no out.wav.npy either
    codes = tmp_path / "codes.npy"
    assert main(["codec", "encode", str(wav), str(codes), "--checkpoint", str(codec_dir)]) == 0
    assert codes.is_file() and not list(tmp_path.glob(".*.tmp"))


def test_codes_are_written_exactly_where_said_in_the_format_the_suffix_names(
    codec_dir, tmp_path, capsys
):
    """`codec encode IN codes.pt` writes codes.pt (it used to write codes.pt.npy and print
    codes.pt); each format decodes to the same audio."""
    wav = write(tmp_path / "in.wav", tone(0.5))
    decoded = {}
    for name in ("codes.npy", "codes.pt", "codes.safetensors"):
        out = tmp_path / name
        assert main(["codec", "encode", str(wav), str(out), "--checkpoint", str(codec_dir)]) == 0
        assert f"{out}: codes [4 levels, 25 frames]" in capsys.readouterr().out
        audio_out = tmp_path / f"{name}.wav"
        argv = ["codec", "decode", str(out), str(audio_out), "--checkpoint", str(codec_dir)]
        assert main(argv) == 0
        decoded[name] = audio.load(audio_out, 16000)
    assert sorted(p.name for p in tmp_path.glob("codes.*") if p.suffix != ".wav") == [
        "codes.npy", "codes.pt", "codes.safetensors"
    ]
    np.testing.assert_array_equal(decoded["codes.pt"], decoded["codes.npy"])
    np.testing.assert_array_equal(decoded["codes.safetensors"], decoded["codes.npy"])
    torch.save({"not": "a tensor"}, tmp_path / "bad.pt")
    argv = ["codec", "decode", str(tmp_path / "bad.pt"), str(tmp_path / "x.wav")]
    assert main([*argv, "--checkpoint", str(codec_dir)]) == 2
    assert "cannot read codes" in capsys.readouterr().err
    (tmp_path / "codes.txt").write_text("1 2 3")
    argv = ["codec", "decode", str(tmp_path / "codes.txt"), str(tmp_path / "x.wav")]
    assert main([*argv, "--checkpoint", str(codec_dir)]) == 2
    assert "codes must be a .npy or .pt or .safetensors file" in capsys.readouterr().err
