"""Audio quality metrics for reconstructions: SI-SNR, multi-scale mel distance, PESQ-WB, STOI,
ViSQOL, and speaker similarity (does the reconstruction keep the voice). PESQ/STOI/ViSQOL and
the speaker encoder come from their reference packages and are reported as None when the
package is not installed (`pip install segue[eval]`), never faked."""

from __future__ import annotations

import functools
import importlib.util
import math

import numpy as np
import torch

from segue.errors import InputError
from segue.features import mel_filterbank, stft_magnitude

#: Mel distance: (window, mel bins) pairs; the mean L1 of log10 mels over these scales.
MEL_SCALES = ((256, 32), (512, 64), (1024, 128), (2048, 128))


def si_snr(estimate: np.ndarray, reference: np.ndarray, eps: float = 1e-8) -> float:
    """Scale-invariant signal-to-noise ratio in dB of two [T] signals (higher is better)."""
    estimate, reference = _aligned(estimate, reference)
    estimate = estimate - estimate.mean()
    reference = reference - reference.mean()
    target = np.dot(estimate, reference) / (np.dot(reference, reference) + eps) * reference
    noise = estimate - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


def mel_distance(estimate: np.ndarray, reference: np.ndarray, sample_rate: int = 16000) -> float:
    """Mean absolute difference of log10 mel spectrograms over MEL_SCALES (lower is better)."""
    estimate, reference = _aligned(estimate, reference)
    x = torch.from_numpy(np.stack([estimate, reference]).astype(np.float32))
    total = 0.0
    for window, bins in MEL_SCALES:
        mel = mel_filterbank(window, bins, sample_rate) @ stft_magnitude(x, window, window // 4)
        logmel = torch.log10(mel.clamp_min(1e-5))
        total += float((logmel[0] - logmel[1]).abs().mean())
    return total / len(MEL_SCALES)


def available(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def pesq_wb(estimate: np.ndarray, reference: np.ndarray, sample_rate: int = 16000) -> float | None:
    """Wide-band PESQ (ITU-T P.862.2), 1.0-4.6, or None without the `pesq` package."""
    if not available("pesq") or sample_rate != 16000:
        return None
    from pesq import pesq
    from pesq.cypesq import PesqError

    estimate, reference = _aligned(estimate, reference)
    try:
        return float(pesq(sample_rate, reference, estimate, "wb"))
    except PesqError:  # e.g. no utterance detected in a silent reference
        return None


def stoi(estimate: np.ndarray, reference: np.ndarray, sample_rate: int = 16000) -> float | None:
    """Short-time objective intelligibility, 0-1, or None without the `pystoi` package."""
    if not available("pystoi"):
        return None
    from pystoi import stoi as _stoi

    estimate, reference = _aligned(estimate, reference)
    return float(_stoi(reference, estimate, sample_rate, extended=False))


@functools.lru_cache(maxsize=1)
def _visqol_speech_api():
    import warnings

    from visqol import VisqolApi

    api = VisqolApi()
    with warnings.catch_warnings():  # without ai-edge-litert it falls back to its polynomial map
        warnings.simplefilter("ignore")
        api.create(mode="speech", use_lattice_model=available("ai_edge_litert"))
    return api


def visqol(estimate: np.ndarray, reference: np.ndarray, sample_rate: int = 16000) -> float | None:
    """ViSQOL v3 speech-mode MOS-LQO (1-5), or None without the `visqol-python` package."""
    if not available("visqol") or sample_rate != 16000:
        return None
    estimate, reference = _aligned(estimate, reference)
    try:
        result = _visqol_speech_api().measure_from_arrays(reference, estimate, sample_rate)
    except (IndexError, ValueError):  # too short, or no speech-like patch to compare
        return None
    return float(result.moslqo)


@functools.lru_cache(maxsize=1)
def _speaker_encoder():
    from segue.eval.speaker import SpeakerEncoder

    return SpeakerEncoder()


def speaker_similarity(
    estimate: np.ndarray, reference: np.ndarray, sample_rate: int = 16000
) -> float | None:
    """Cosine of the Resemblyzer d-vectors of the two signals (1.0: the same voice to the
    encoder; two files of one voice score ~0.75-0.9 and two voices ~0.45-0.55 on our corpora),
    or None without `resemblyzer`. A codec that renders every voice like its training voices
    scores low here however clean its output."""
    if not (available("resemblyzer") and available("webrtcvad")):
        return None
    from segue.eval.speaker import cosine

    estimate, reference = _aligned(estimate, reference)
    encoder = _speaker_encoder()
    return cosine(encoder.embed(estimate, sample_rate), encoder.embed(reference, sample_rate))


def all_metrics(estimate: np.ndarray, reference: np.ndarray, sample_rate: int = 16000) -> dict:
    """Every metric above for one pair of [T] signals; unavailable ones are None."""
    return {
        "si_snr": si_snr(estimate, reference),
        "mel_distance": mel_distance(estimate, reference, sample_rate),
        "pesq": pesq_wb(estimate, reference, sample_rate),
        "stoi": stoi(estimate, reference, sample_rate),
        "visqol": visqol(estimate, reference, sample_rate),
        "speaker": speaker_similarity(estimate, reference, sample_rate),
    }


def mean_metrics(rows: list[dict]) -> dict:
    """Average each metric over rows, skipping None values (None if all are None)."""
    keys = rows[0].keys() if rows else []
    out = {}
    for key in keys:
        values = [r[key] for r in rows if r[key] is not None and not math.isnan(r[key])]
        out[key] = float(np.mean(values)) if values else None
    return out


def _aligned(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float64 [T], cut to the shorter length."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    n = min(len(a), len(b))
    if n == 0:
        raise InputError("cannot compare empty signals")
    return a[:n], b[:n]
