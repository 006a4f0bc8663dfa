import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from segue.data.crops import CropDataset
from segue.data.manifest import ManifestEntry, read_manifest, write_manifest
from tests.conftest import write


@pytest.fixture
def ramp_manifest(tmp_path):
    """Files whose sample values encode their position (so crops can be located exactly)."""
    entries = []
    for name, seconds in (("long", 3.0), ("short", 0.5), ("exact", 1.0)):
        n = int(seconds * 16000)
        ramp = (np.arange(n) / 48000).astype(np.float32)
        write(tmp_path / f"{name}.wav", ramp, subtype="FLOAT")
        entries.append(ManifestEntry(f"{name}.wav", seconds, 16000, name, split="train"))
    write_manifest(tmp_path / "m.jsonl", entries)
    return tmp_path / "m.jsonl"


def test_crop_shapes_and_end_flags(ramp_manifest):
    ds = CropDataset(ramp_manifest, crop_seconds=1.0, split="train", seed=0)
    by_name = {ds.manifest.entries[i].path: ds[i] for i in range(len(ds))}
    for item in by_name.values():
        assert item["audio"].shape == (16000,) and item["audio"].dtype == torch.float32
    short = by_name["short.wav"]
    assert short["length"] == 8000 and short["is_start"] and short["reaches_end"]
    assert torch.all(short["audio"][8000:] == 0)
    exact = by_name["exact.wav"]
    assert exact["length"] == 16000 and exact["is_start"] and exact["reaches_end"]


def test_crop_is_the_right_part_of_the_file(ramp_manifest):
    ds = CropDataset(ramp_manifest, crop_seconds=1.0, seed=1)
    index = [e.path for e in ds.manifest.entries].index("long.wav")
    for epoch in range(5):
        ds.set_epoch(epoch)
        start = ds.crop_start(index)
        item = ds[index]
        first = round(start * 16000)
        np.testing.assert_allclose(item["audio"][:5].numpy(), (first + np.arange(5)) / 48000,
                                   atol=1e-6)
        assert item["reaches_end"] == (start >= 2.0 - 1 / 16000)


def test_crops_are_reproducible_and_vary_by_epoch(ramp_manifest):
    a = CropDataset(ramp_manifest, crop_seconds=0.5, seed=7)
    b = CropDataset(ramp_manifest, crop_seconds=0.5, seed=7)
    starts = [a.crop_start(i) for i in range(len(a))]
    assert starts == [b.crop_start(i) for i in range(len(b))]
    a.set_epoch(1)
    assert [a.crop_start(i) for i in range(len(a))] != starts


def test_end_probability_aligns_crops_to_file_end(ramp_manifest):
    ds = CropDataset(ramp_manifest, crop_seconds=1.0, end_probability=1.0)
    index = [e.path for e in ds.manifest.entries].index("long.wav")
    assert ds.crop_start(index) == 2.0 and ds[index]["reaches_end"]
    never = CropDataset(ramp_manifest, crop_seconds=1.0, end_probability=0.0)
    ends = []
    for epoch in range(20):
        never.set_epoch(epoch)
        ends.append(never[index]["reaches_end"])
    assert not any(ends)


def test_resampling_and_dataloader(tmp_path):
    write(tmp_path / "a.flac", np.zeros(44100, np.float32), 44100)
    write_manifest(tmp_path / "m.jsonl", [ManifestEntry("a.flac", 1.0, 44100, "a")])
    ds = CropDataset(read_manifest(tmp_path / "m.jsonl"), crop_seconds=0.5, sample_rate=16000)
    batch = next(iter(DataLoader(ds, batch_size=1)))
    assert batch["audio"].shape == (1, 8000) and batch["length"].item() == 8000


def test_min_seconds_and_bad_arguments(ramp_manifest):
    ds = CropDataset(ramp_manifest, crop_seconds=1.0, min_seconds=1.0)
    assert sorted(e.path for e in ds.manifest.entries) == ["exact.wav", "long.wav"]
    with pytest.raises(ValueError, match="no files"):
        CropDataset(ramp_manifest, crop_seconds=1.0, min_seconds=10)
    with pytest.raises(ValueError, match="crop_seconds"):
        CropDataset(ramp_manifest, crop_seconds=0)
