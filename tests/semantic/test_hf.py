"""The Hugging Face adapter on small random HuBERT / wav2vec 2.0 / w2v-BERT models saved by the
test (nothing is downloaded): layer L = HF's hidden_states[L], 50 -> 25 Hz pooling, and the
same `SemanticTokenizer` interface, saved and reloaded."""

import pytest
import torch

from segue.data.manifest import read_manifest
from segue.semantic.fit import fit_tokenizer
from segue.semantic.tokenizer import load_tokenizer

transformers = pytest.importorskip("transformers")
from segue.semantic.hf import HFExtractor, pool_frames  # noqa: E402

SMALL = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=64,
)
CONV = dict(conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def save_model(kind: str, folder):
    torch.manual_seed(0)
    if kind == "hubert":
        model = transformers.HubertModel(transformers.HubertConfig(**SMALL, **CONV))
    elif kind == "wav2vec2":
        config = transformers.Wav2Vec2Config(
            **SMALL, **CONV, do_stable_layer_norm=True, feat_extract_norm="layer"
        )
        model = transformers.Wav2Vec2Model(config)
        transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    else:
        config = transformers.Wav2Vec2BertConfig(
            **SMALL, output_hidden_size=32, conv_depthwise_kernel_size=3, add_adapter=False
        )
        model = transformers.Wav2Vec2BertModel(config)
        transformers.SeamlessM4TFeatureExtractor().save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["hubert", "wav2vec2", "wav2vec2-bert"])
def test_layer_matches_hidden_states_and_pools_to_25_hz(kind, tmp_path):
    folder = save_model(kind, tmp_path / kind)
    audio = torch.randn(16000) * 0.1
    native = HFExtractor.from_pretrained(folder, 2, pool=1, local_files_only=True)
    full = transformers.AutoModel.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        reference = full(**native._inputs(audio), output_hidden_states=True).hidden_states[2][0]
        features, lengths = native(audio[None])
    assert len(native.model.encoder.layers) == 2  # layers above L are dropped
    assert native.frame_rate == 50.0 and lengths.tolist() == [reference.shape[0]]
    torch.testing.assert_close(features[0], reference)
    pooled = HFExtractor.from_pretrained(folder, 2, local_files_only=True)
    with torch.no_grad():
        halves, lengths = pooled(torch.stack([audio, audio]), torch.tensor([16000, 8000]))
    assert pooled.frame_rate == 25.0 and halves.shape[1] == -(-reference.shape[0] // 2)
    torch.testing.assert_close(halves[0], pool_frames(reference, 2))
    assert lengths[1] < lengths[0]


def test_pool_frames_keeps_a_trailing_odd_frame():
    x = torch.arange(10.0).view(5, 2)
    assert pool_frames(x, 2).tolist() == [[1.0, 2.0], [5.0, 6.0], [8.0, 9.0]]
    assert torch.equal(pool_frames(x, 1), x)


def test_hf_tokenizer_fits_saves_and_reloads(corpus, tmp_path):
    folder = save_model("hubert", tmp_path / "hubert")
    extractor = HFExtractor.from_pretrained(folder, 1, local_files_only=True)
    train = read_manifest(corpus, split="train")
    tokenizer = fit_tokenizer(extractor, train, 8, niter=5, progress=False, source=str(folder))
    audio = torch.randn(1, 12000) * 0.1
    tokens = tokenizer.tokenize(audio)
    assert tokens.shape[0] == 1 and tokenizer.frame_rate == 25.0
    saved = tokenizer.save(tmp_path / "tok")
    assert (saved / "hf" / "config.json").is_file()  # self-contained: the truncated model
    loaded = load_tokenizer(saved)
    assert loaded.kind == "hf" and loaded.extractor.layer == 1
    assert torch.equal(loaded.tokenize(audio), tokens)


def test_bad_layer_and_model_type(tmp_path):
    folder = save_model("hubert", tmp_path / "hubert")
    with pytest.raises(ValueError, match="layer"):
        HFExtractor.from_pretrained(folder, 9, local_files_only=True)
