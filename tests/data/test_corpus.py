"""The shared corpus runner, with a cheap synthetic renderer (no TTS engine needed)."""

import itertools
import json

import numpy as np

from segue.data.corpus import CorpusItem, build_corpus
from segue.data.manifest import read_manifest, read_splits, splits_path_for


def items():
    for i in itertools.count():
        split = "test" if i % 5 == 4 else "train"
        group = f"voice{i % 5}"
        yield CorpusItem(uid=f"utt{i:04d}", group=group, split=split, meta={"text": f"n {i}"})


def render(item: CorpusItem) -> np.ndarray:
    number = int(item.uid[3:])
    if number == 3:
        raise RuntimeError("engine crashed")  # one failure is skipped, not fatal
    return np.full(1600 * (1 + number % 3), 0.1, np.float32)


def test_build_writes_flac_manifest_and_splits(tmp_path):
    summary = build_corpus(tmp_path, items(), render, hours=2.0 / 3600, workers=2)
    manifest = read_manifest(tmp_path / "manifest.jsonl")
    assert summary.seconds >= 2.0 and summary.failed == 1
    assert "utt0003" not in {e.path for e in manifest}
    assert [e.path for e in manifest][:3] == ["voice0/utt0000.flac", "voice0/utt0005.flac",
                                              "voice0/utt0010.flac"]
    assert all(manifest.resolve(e).is_file() for e in manifest)
    assert all(e.extra["text"].startswith("n ") for e in manifest)
    splits = read_splits(splits_path_for(tmp_path / "manifest.jsonl"))
    assert splits["test"] == ["voice4"] and "voice4" not in splits["train"]


def test_resume_gives_the_same_corpus(tmp_path):
    full = tmp_path / "full"
    build_corpus(full, items(), render, hours=3.0 / 3600, workers=2)
    part = tmp_path / "part"
    build_corpus(part, items(), render, hours=1.0 / 3600, workers=1)
    # A crash mid-write leaves a cut last line: it is ignored and that item re-rendered.
    with (part / ".progress.jsonl").open("a") as log:
        log.write('{"uid": "utt99')
    summary = build_corpus(part, items(), render, hours=3.0 / 3600, workers=2)
    assert summary.resumed > 0
    assert (part / "manifest.jsonl").read_text() == (full / "manifest.jsonl").read_text()
    lines = [json.loads(x) for x in (full / "manifest.jsonl").read_text().splitlines()]
    assert sum(x["duration"] for x in lines) >= 3.0


class Counting:
    """A picklable renderer that leaves a mark per call (it runs in worker processes)."""

    def __init__(self, folder):
        self.folder = folder

    def __call__(self, item):
        (self.folder / f"{item.uid}.{len(list(self.folder.iterdir()))}").touch()
        return render(item)

    def calls(self):
        return sorted(p.name.split(".")[0] for p in self.folder.iterdir())


def test_resume_reuses_audio_but_takes_the_items_current_description(tmp_path):
    (tmp_path / "marks").mkdir()
    counting, out = Counting(tmp_path / "marks"), tmp_path / "corpus"
    build_corpus(out, items(), counting, hours=1.0 / 3600, workers=1)
    kept = [e.path.split("/")[1][:-5] for e in read_manifest(out / "manifest.jsonl")]

    def described():  # the same items, with more metadata and one group renamed
        for item in items():
            group = "renamed" if item.uid == "utt0000" else item.group
            yield CorpusItem(item.uid, group, item.split, {**item.meta, "sentence_id": item.uid})

    summary = build_corpus(out, described(), counting, hours=1.0 / 3600, workers=1)
    again = counting.calls()
    # Only the item whose file moved is rendered again (besides retried failures and the
    # look-ahead items the first run rendered past its target).
    assert again.count("utt0000") == 2
    assert all(again.count(uid) == 1 for uid in kept if uid != "utt0000")
    manifest = read_manifest(out / "manifest.jsonl")
    assert all(e.extra["sentence_id"] == e.path.split("/")[1][:-5] for e in manifest)
    assert "renamed/utt0000.flac" in {e.path for e in manifest}
    assert summary.resumed == summary.files - 1
    # The progress log now holds the new descriptions: a third run renders nothing.
    build_corpus(out, described(), counting, hours=1.0 / 3600, workers=1)
    third = counting.calls()
    assert all(third.count(uid) == again.count(uid) for uid in kept)
