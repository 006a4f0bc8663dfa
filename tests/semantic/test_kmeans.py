"""k-means codebooks: seeded determinism, stored normalisation, tokenizer folders round trip."""

import json

import numpy as np
import pytest
import torch

from segue.data.manifest import read_manifest
from segue.semantic.extractors import MFCCExtractor
from segue.semantic.fit import fit_tokenizer
from segue.semantic.kmeans import KMeansCodebook, fit_kmeans
from segue.semantic.tokenizer import SemanticTokenizer, find_tokenizer, load_tokenizer
from tests.semantic.conftest import utterance


def blobs(seed=0, n=600, dim=6):
    """Three well-separated clusters, with dimensions on very different scales."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, dim)) * 5
    x = centers[rng.integers(0, 3, n)] + rng.normal(size=(n, dim))
    return (x * np.array([1, 10, 100, 1, 0.1, 1000])[:dim]).astype(np.float32)


def test_same_seed_same_centroids_and_assignments():
    x = blobs()
    a, err_a = fit_kmeans(x, 16, seed=3, niter=10)
    b, err_b = fit_kmeans(x, 16, seed=3, niter=10)
    c, _ = fit_kmeans(x, 16, seed=4, niter=10)
    assert torch.equal(a.centroids, b.centroids) and err_a == err_b
    assert not torch.equal(a.centroids, c.centroids)
    assert torch.equal(a(torch.from_numpy(x)), b(torch.from_numpy(x)))


def test_normalisation_is_stored_and_applied():
    x = blobs()
    codebook, _ = fit_kmeans(x, 3, seed=0, niter=20)
    np.testing.assert_allclose(codebook.mean.numpy(), x.mean(0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(codebook.std.numpy(), x.std(0), rtol=1e-4)
    # Assignment = nearest centroid in the normalised space (brute force in numpy).
    z = (x - codebook.mean.numpy()) / codebook.std.numpy()
    distances = ((z[:, None] - codebook.centroids.numpy()[None]) ** 2).sum(-1)
    ids = codebook(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(ids, distances.argmin(1))
    # Without normalisation the 1000x dimension would decide alone; with it all 3 blobs come out.
    assert len(np.unique(ids)) == 3
    assert codebook(torch.from_numpy(x).view(20, 30, 6)).shape == (20, 30)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="at least 50"):
        fit_kmeans(np.zeros((10, 3), np.float32), 50)
    with pytest.raises(ValueError, match="NaN"):
        fit_kmeans(np.full((100, 3), np.nan, np.float32), 4)
    with pytest.raises(ValueError, match="inconsistent"):
        KMeansCodebook(torch.zeros(3), torch.ones(3), torch.zeros(4, 2))


def test_tokenizer_folder_round_trip(corpus, tmp_path):
    train = read_manifest(corpus, split="train")
    tokenizer = fit_tokenizer(MFCCExtractor(), train, 16, seed=0, niter=10, progress=False)
    assert tokenizer.vocab_size == 16 and tokenizer.frame_rate == 25.0
    assert tokenizer.info["files"] == 6 and tokenizer.info["frames"] > 16
    path = tokenizer.save(tmp_path / "tok")
    described = json.loads((path / "tokenizer.json").read_text())
    assert described["kind"] == "mfcc" and described["vocab_size"] == 16
    loaded = load_tokenizer(path)
    audio = torch.from_numpy(utterance(3, 1, 1.3))
    tokens = loaded.tokenize(audio)
    assert tokens.shape == (1, 33) and tokens.dtype == torch.int64
    assert torch.equal(tokens, tokenizer.tokenize(audio))
    assert torch.equal(loaded.tokenize(audio.numpy()), tokens)  # numpy in, same tokens
    with pytest.raises(FileNotFoundError, match="not a semantic tokenizer"):
        find_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="tokenizer folder"):
        SemanticTokenizer.load(tmp_path)


def test_long_audio_is_tokenized_in_windows_with_context():
    """A 20-minute file through one attention pass does not fit in memory; windows with
    context do. Local features (MFCCs) give exactly the one-pass tokens."""
    import torch

    from segue.semantic.extractors import MFCCExtractor
    from segue.semantic.kmeans import KMeansCodebook
    from segue.semantic.tokenizer import SemanticTokenizer

    torch.manual_seed(0)
    codebook = KMeansCodebook(torch.zeros(39), 10 * torch.ones(39), torch.randn(16, 39))
    tokenizer = SemanticTokenizer(MFCCExtractor(), codebook)
    audio = 0.3 * torch.randn(16000 * 12 + 77)
    one_pass = tokenizer.tokenize(audio, window_seconds=None)
    assert one_pass.shape == (1, 301)
    for window, context in ((3.0, 1.0), (2.2, 0.5)):
        windowed = tokenizer.tokenize(audio, window_seconds=window, context_seconds=context)
        assert torch.equal(windowed, one_pass)
    # Short audio, or rows with lengths, take one pass whatever the window.
    assert torch.equal(tokenizer.tokenize(audio[:16000], window_seconds=0.1), one_pass[:, :25])
