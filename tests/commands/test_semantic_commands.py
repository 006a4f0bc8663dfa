"""`segue semantic train|fit-kmeans|tokenize|eval` on tiny synthetic data, parsed as `segue`
parses them (`segue.cli.parse`), plus the one-line errors."""

import json

import numpy as np
import pytest

from segue import cli
from segue.commands import CommandError
from segue.data.shards import TokenShards
from segue.semantic.tokenizer import load_tokenizer
from tests.conftest import write
from tests.semantic.conftest import corpus, utterance  # noqa: F401 (fixtures)

TINY_MODEL = [
    "model.n_mels=40",
    "model.conv_channels=32",
    "model.dim=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.pos_conv_kernel=5",
    "model.pos_conv_groups=4",
    "model.head_dim=16",
    "model.tokenizer_layer=1",
]
FAST = [
    "data.crop_seconds=0.6",
    "data.valid_crop_seconds=0.6",
    "targets.niter=5",
    "train.batch_size=2",
    "train.num_workers=0",
    "train.checkpoint_every=2",
    "train.valid_every=2",
    "train.progress=false",
    "train.tensorboard=false",
]


def semantic(*argv: str) -> None:
    args = cli.parse(["semantic", *argv])
    args.func(args)


def settings(*pairs: str) -> list[str]:
    return [item for pair in pairs for item in ("--set", pair)]


@pytest.fixture
def run(corpus, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    semantic(
        "train",
        str(corpus),
        "--out",
        str(out),
        "--k",
        "8",
        "--max-steps",
        "2",
        *settings(*TINY_MODEL, *FAST),
    )
    return out


def test_train_fit_tokenize_eval(run, corpus, tmp_path, capsys):  # noqa: F811
    assert (run / "targets/tokenizer.json").is_file() and (run / "checkpoints/latest").is_file()
    semantic("fit-kmeans", str(corpus), "--model", str(run), "--k", "8")
    tokenizer = load_tokenizer(run)  # RUN/tokenizer
    assert tokenizer.vocab_size == 8 and tokenizer.extractor.layer == 1
    assert "K=8 k-means of segue features" in capsys.readouterr().out

    wav = write(tmp_path / "in.wav", utterance(7, 2, 0.9))
    semantic("tokenize", str(wav), "--model", str(run), "-o", str(tmp_path / "t.npy"))
    single = np.load(tmp_path / "t.npy")
    assert single.shape == (23,) and "23 tokens at 25 Hz" in capsys.readouterr().out

    shards = tmp_path / "shards"
    semantic("tokenize", str(corpus), "--model", str(run), "--out", str(shards))
    read = TokenShards(shards)
    assert read.meta["kind"] == "semantic" and read.levels == 1 and read.vocab_size == 8
    assert len(read) == 17
    from segue import audio

    for i, entry in enumerate(read.entries[:4]):
        path = tmp_path / entry.key
        out = tmp_path / f"single{i}.npy"
        semantic("tokenize", str(path), "--model", str(run), "--out", str(out))
        np.testing.assert_array_equal(read.tokens(i)[0], np.load(out))
        assert read.tokens(i).shape[1] == -(-audio.info(path).num_frames // 640)
    # resumable: a second run skips every file (the old spellings still work, for a release)
    semantic("tokenize", "--checkpoint", str(run), "--manifest", str(corpus), "--out", str(shards))
    assert "0 tokenized, 17 already done" in capsys.readouterr().out

    import torch

    from segue.codec import Codec
    from tests.codec.test_model import small_config

    torch.manual_seed(0)
    codec = Codec(small_config()).save_pretrained(tmp_path / "codec")
    report_path = tmp_path / "report.json"
    semantic(
        "eval",
        str(corpus),
        "--model",
        f"ours={run}",
        "--mfcc-k",
        "8",
        "--codec",
        str(codec),
        "--json",
        str(report_path),
    )
    printed = capsys.readouterr().out
    assert "ours" in printed and "mfcc-k8" in printed and "same NED" in printed
    report = json.loads(report_path.read_text())
    assert set(report["tokenizers"]) == {"ours", "mfcc-k8", "mfcc-cmn-k8", "codec-L1"}
    assert report["pairs"] == 9 and report["tokenizers"]["codec-L1"]["frame_rate"] == 50


def test_iteration_2_from_the_command(run, corpus, tmp_path):  # noqa: F811
    out = tmp_path / "it2"
    semantic(
        "train",
        str(corpus),
        "--out",
        str(out),
        "--iteration",
        "2",
        "--teacher",
        str(run),
        "--k",
        "8",
        "--layer",
        "1",
        "--max-steps",
        "1",
        *settings(*TINY_MODEL, *FAST),
    )
    described = json.loads((out / "targets/tokenizer.json").read_text())
    assert described["kind"] == "segue" and described["features"]["layer"] == 1
    config = json.loads((out / "config.json").read_text())
    assert config["targets"]["teacher"] == str(run) and config["model"]["n_classes"] == 8
    # --resume alone continues it (the run's config.json holds the teacher and the targets)
    semantic("train", "--out", str(out), "--resume", "--max-steps", "2")
    assert (out / "checkpoints/step_000002").is_dir()


def test_fit_kmeans_on_a_hugging_face_model(corpus, tmp_path):  # noqa: F811
    pytest.importorskip("transformers")
    from tests.semantic.test_hf import save_model

    folder = save_model("hubert", tmp_path / "hubert")
    out = tmp_path / "hf-tok"
    semantic(
        "fit-kmeans",
        str(corpus),
        "--model",
        f"hf:{folder}",
        "--layer",
        "1",
        "--k",
        "8",
        "--out",
        str(out),
    )
    wav = write(tmp_path / "in.wav", utterance(7, 2, 0.9))
    semantic("tokenize", str(wav), "--model", str(out), "-o", str(tmp_path / "t.npy"))
    assert np.load(tmp_path / "t.npy").shape == (22,)  # 44 HuBERT frames (50 Hz), paired
    with pytest.raises(CommandError, match="--layer is required"):
        semantic("fit-kmeans", str(corpus), "--model", f"hf:{folder}", "--out", str(out))


def test_clear_errors(corpus, tmp_path):  # noqa: F811
    with pytest.raises(FileNotFoundError, match="not a semantic tokenizer"):
        semantic("tokenize", str(tmp_path / "x.wav"), "--model", str(tmp_path))
    with pytest.raises(CommandError, match="--iteration 2 needs --teacher"):
        semantic("train", str(corpus), "--out", str(tmp_path / "r"), "--iteration", "2")
    with pytest.raises(CommandError, match="teacher not found"):
        semantic(
            "train",
            str(corpus),
            "--out",
            str(tmp_path / "r"),
            "--iteration",
            "2",
            "--teacher",
            str(tmp_path / "missing"),
        )
    with pytest.raises(CommandError, match="a manifest needs --out"):
        semantic("tokenize", str(corpus), "--model", str(tmp_path))
    # -o X.wav would have written X.wav.npy while saying X.wav.
    with pytest.raises(CommandError, match=r"must end in \.npy"):
        semantic("tokenize", str(tmp_path / "x.wav"), "--model", str(tmp_path), "-o",
                 str(tmp_path / "x.wav"))
    with pytest.raises(CommandError, match="not a semantic run"):
        semantic("fit-kmeans", str(corpus), "--model", str(tmp_path), "--out", str(tmp_path / "t"))
    with pytest.raises(CommandError, match="MANIFEST"):
        semantic("train", "--out", str(tmp_path / "new"))


def test_bad_audio_file_is_an_audio_error(corpus, tmp_path):  # noqa: F811
    from segue.audio import AudioError
    from segue.data.manifest import read_manifest
    from segue.semantic.extractors import MFCCExtractor
    from segue.semantic.fit import fit_tokenizer

    tokenizer = fit_tokenizer(
        MFCCExtractor(), read_manifest(corpus, split="train"), 8, niter=5, progress=False
    )
    folder = tokenizer.save(tmp_path / "mfcc")
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio at all\n" * 10)
    with pytest.raises(AudioError, match="not a readable audio file"):
        semantic("tokenize", str(bad), "--model", str(folder))
    with pytest.raises(AudioError, match="file not found"):
        semantic("tokenize", str(tmp_path / "missing.wav"), "--model", str(folder))
