"""The real-speech corpus: dialog parsing, groups and splits, non-speech checks, package fetching
and the whole build, on small fake package trees made here (nothing is downloaded)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from segue.data import real_speech as rs
from segue.data.manifest import read_manifest, read_splits, splits_path_for
from tests.conftest import write
from tests.data.fake_debs import (
    ASTERISK_COPYRIGHT,
    FakeApt,
    beep,
    build_deb,
    speechlike,
    write_copyright,
    write_g722,
)

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


# ------------------------------------------------------------------------------ text, groups

DIALOGS_CS = r'''
dialogId("vit-hs-vitejteA", "font_statue", "Welcome to the most beautiful city under the sun.")
dialogStr("Vítejte v nejkrásnějším městě pod sluncem.")


dialogId("m-uvedomit", "font_small",
"You need to realize that the steel cylinder surrounding us")
dialogStr("Je dobré si uvědomit, že ta trubka kolem.")

dialogId("war-v-pohadka", "font_big", "In the C:\\WINDOWS directory \"we\" talk.")
dialogStr(
"V adresáři C:\\WINDOWS si " .. 'povídáme.')

dialogId("z-c-1", "", "")
dialogStr("")

dialogId("vit-x-noline", "font_lightgrey", "Only English here.")
'''


def test_parse_dialogs_reads_the_game_format():
    lines = rs.parse_dialogs(DIALOGS_CS)
    assert lines["vit-hs-vitejteA"] == rs.DialogLine(
        "vit-hs-vitejteA", "font_statue", "Welcome to the most beautiful city under the sun.",
        "Vítejte v nejkrásnějším městě pod sluncem.")
    assert lines["m-uvedomit"].english.startswith("You need to realize")  # call over two lines
    assert lines["m-uvedomit"].text == "Je dobré si uvědomit, že ta trubka kolem."
    assert lines["war-v-pohadka"].english == 'In the C:\\WINDOWS directory "we" talk.'
    assert lines["war-v-pohadka"].text == "V adresáři C:\\WINDOWS si povídáme."  # .. and '
    assert lines["z-c-1"].font == "" and lines["z-c-1"].text == ""
    assert lines["vit-x-noline"].text == "Only English here."  # no dialogStr: the English


@pytest.mark.parametrize(("ident", "font", "character"), [
    ("let-m-divna", "font_small", "m"),
    ("v-zkus", "font_big", "v"),
    ("vit-hs-klid1", "font_statue", "statue"),
    ("dr-4-erik", "font_viking4", "viking4"),
    ("rd-1-3", "", "other"),
    ("bar-v-fotka", "", "v"),  # not in the scripts: the id's character field
    ("m-myslis", "", "m"),
])
def test_fillets_character(ident, font, character):
    assert rs.fillets_character(ident, font) == character


def test_klettres_text_prefers_the_sound_list_then_readable_names():
    assert rs.klettres_text("Č", "a-3") == "Č"
    assert rs.klettres_text(None, "dog") == "dog"
    assert rs.klettres_text(None, "ch") == "ch"
    assert rs.klettres_text(None, "a-12") == ""
    assert rs.klettres_text(None, "U0066") == ""




# ------------------------------------------------------------------------- fake package trees


def make_trees(root: Path, with_g722: bool = True) -> dict[str, Path]:
    """Small unpacked trees of every package, laid out as the real ones are."""
    trees = {name: root / name for name in rs.PACKAGES_BY_NAME}
    scripts = trees["fillets-ng-data"] / rs.FILLETS_ROOT / "script"
    (scripts / "city").mkdir(parents=True)
    (scripts / "city" / "dialogs_cs.lua").write_text(DIALOGS_CS)
    (scripts / "city" / "dialogs_nl.lua").write_text(
        'dialogId("m-uvedomit", "font_small", "You need to realize")\n'
        'dialogStr("Je moet beseffen")\n')
    (scripts / "share").mkdir()
    (scripts / "share" / "border_dialogs_cs.lua").write_text(
        'dialogId("sp-v-hranice", "font_big", "The border.")\ndialogStr("Hranice.")\n')
    (trees["fillets-ng-data"] / rs.FILLETS_ROOT / "music").mkdir()
    write_copyright(trees["fillets-ng-data"], "fillets-ng-data")
    seed = iter(range(1000))
    for lang in rs.FILLETS_LANGUAGES:
        tree = trees[f"fillets-ng-data-{lang}"]
        sound = tree / rs.FILLETS_ROOT / "sound"
        for name in ("vit-hs-vitejteA", "m-uvedomit", "war-v-pohadka"):
            write(sound / "city" / lang / f"{name}.ogg", speechlike(1.5, next(seed)), 22050)
        write(sound / "share" / "border" / lang / "sp-v-hranice.ogg",
              speechlike(1.2, next(seed)), 22050)
        write_copyright(tree, f"fillets-ng-data-{lang}")
    write(trees["fillets-ng-data-cs"] / rs.FILLETS_ROOT / "sound/city/cs/bar_v_fotka.ogg",
          beep(), 22050)  # a sound effect in the speech folder
    bad = trees["fillets-ng-data-nl"] / rs.FILLETS_ROOT / "sound/city/nl/broken.ogg"
    bad.write_bytes(b"OggS not really")  # does not decode
    klettres = trees["klettres-data"] / rs.KLETTRES_ROOT
    for lang in ("cs", "en", "en_GB", "fr", "de"):
        write(klettres / lang / "alpha" / "a-0.ogg", speechlike(0.8, next(seed)), 44100,
              )
        write(klettres / lang / "syllab" / "dog.ogg", speechlike(0.9, next(seed)), 44100)
    (klettres / "cs" / "sounds.xml").write_text(
        '<klettres><language code="cs"><alphabet>'
        '<sound name="A" file="cs/alpha/a-0.ogg" /></alphabet></language></klettres>')
    write_copyright(trees["klettres-data"], "klettres-data")
    voices = {"es": "es_MX_f_Allison", "fr": "fr_CA_f_June", "it": "it_IT_m_Carlo",
              "ru": "ru_RU_f_IvrvoiceRU"}
    for lang, voice in voices.items():
        package = f"asterisk-core-sounds-{lang}-g722"
        folder = trees[package] / rs.ASTERISK_ROOT / voice
        folder.mkdir(parents=True)
        write_copyright(trees[package], package, ASTERISK_COPYRIGHT)
        if not with_g722:
            continue
        for prompt, audio in (("vm-goodbye", speechlike(2.0, next(seed))),
                              ("digits/7", speechlike(0.9, next(seed))),
                              ("beep", beep()), ("silence/1", np.zeros(16000, np.float32))):
            write_g722(folder / f"{prompt}.g722", audio)
    return trees


def test_items_groups_texts_and_splits(tmp_path):
    trees = make_trees(tmp_path, with_g722=False)
    items = rs.real_speech_items(trees)
    by_uid = {i.uid: i for i in items}
    statue = by_uid["fillets-cs-city-vit-hs-vitejteA"]
    assert statue.group == "fillets-cs-statue" and statue.split == "test"
    assert statue.meta["text"] == "Vítejte v nejkrásnějším městě pod sluncem."
    assert statue.meta["text_en"].startswith("Welcome") and statue.meta["language"] == "cs"
    assert statue.meta["source"] == "fillets-ng-data-cs"
    assert statue.meta["license"] == "GPL-2+"
    assert by_uid["fillets-nl-city-m-uvedomit"].group == "fillets-nl-m"
    assert by_uid["fillets-nl-city-m-uvedomit"].meta["text"] == "Je moet beseffen"
    # share/border is voiced from script/share/border_dialogs_cs.lua
    border = by_uid["fillets-cs-share_border-sp-v-hranice"]
    assert border.group == "fillets-cs-v" and border.meta["text"] == "Hranice."
    assert by_uid["fillets-cs-city-bar_v_fotka"].meta["text"] == ""  # not in the scripts
    assert by_uid["klettres-cs-alpha-a-0"].meta["text"] == "A"  # from sounds.xml
    assert by_uid["klettres-cs-alpha-a-0"].meta["sentence_id"] == "cs:a"
    # The same word in KLettres' two English voices: one content id, for cross-voice pairs.
    assert (by_uid["klettres-en-syllab-dog"].meta["sentence_id"]
            == by_uid["klettres-en_GB-syllab-dog"].meta["sentence_id"] == "en:dog")
    assert "sentence_id" not in by_uid["klettres-de-alpha-a-0"].meta  # no text, no id
    assert by_uid["klettres-de-alpha-a-0"].meta["text"] == ""
    assert by_uid["klettres-de-syllab-dog"].meta["text"] == "dog"
    assert by_uid["klettres-en_GB-alpha-a-0"].meta["language"] == "en"
    assert {i.split for i in items if i.group == "klettres-fr"} == {"valid"}
    assert {i.split for i in items if i.group == "klettres-de"} == {"train"}
    assert len({i.uid for i in items}) == len(items)
    # Interleaved: the first len(groups) items cover every group.
    groups = {i.group for i in items}
    assert {i.group for i in items[: len(groups)]} == groups


@pytest.mark.parametrize(("prompt", "text"), [
    ("letters/b", "B"), ("digits/7", "7"), ("digits/100-and", ""), ("letters/ascii96", ""),
    ("vm-goodbye", ""),
])
def test_asterisk_text_where_the_name_says_it(prompt, text):
    assert rs.asterisk_text(prompt) == text


def test_held_out_voices_cover_two_sources_at_least():
    test, valid = rs.HELD_OUT["test"], rs.HELD_OUT["valid"]
    assert len(test) >= 4 and len(valid) >= 2 and not set(test) & set(valid)
    assert len({g.split("-")[0] for g in test}) >= 2


# ----------------------------------------------------------------------- fetching, building


@needs_dpkg
@needs_ffmpeg
def test_build_skips_non_speech_survives_failures_and_resumes(tmp_path):
    trees = make_trees(tmp_path / "trees")
    debs = {name: build_deb(tree, name, tmp_path) for name, tree in trees.items()}
    apt = FakeApt(debs, missing={"asterisk-core-sounds-ru-g722"})
    out, cache = tmp_path / "corpus", tmp_path / "cache"
    summary = rs.make_real_speech_corpus(out, workers=2, cache=cache, download=apt)
    assert set(summary.package_errors) == {"asterisk-core-sounds-ru-g722"}
    assert "retry with" in summary.package_errors["asterisk-core-sounds-ru-g722"]
    build = summary.build
    # 3 asterisk voices x (beep + silence), the fillets sound effect: skipped, by reason.
    assert build.skipped == {"tone": 4, "silence": 3}
    assert build.failed == 1 and "broken" in build.failures[0]  # listed, not fatal
    manifest = read_manifest(out / "manifest.jsonl")
    assert len(manifest) == build.files == 8 + 10 + 3 * 2
    assert {e.sample_rate for e in manifest} == {16000}
    assert all(manifest.resolve(e).suffix == ".flac" for e in manifest)
    entry = next(e for e in manifest if e.group == "asterisk-it_IT_m_Carlo"
                 and e.extra["prompt"] == "vm-goodbye")
    assert entry.split == "test" and entry.extra["license"] == "CC-BY-SA-3.0"
    assert entry.extra["language"] == "it" and entry.extra["text"] == ""
    splits = read_splits(splits_path_for(out / "manifest.jsonl"))
    assert "fillets-nl-v" in splits["test"] and "klettres-fr" in splits["valid"]
    # A second run fetches nothing new but the missing package, and renders nothing.
    apt.missing.clear()
    again = rs.make_real_speech_corpus(out, workers=2, cache=cache, download=apt)
    assert apt.calls.count("fillets-ng-data-cs") == 1
    assert again.package_errors == {}
    assert again.build.resumed == build.files  # all earlier files reused
    assert again.build.files == build.files + 2  # the Russian voice's two prompts
    third = rs.make_real_speech_corpus(out, workers=2, cache=cache, download=apt)
    assert third.build.resumed == third.build.files and third.build.skipped == {
        "tone": 5, "silence": 4}


def test_nothing_fetched_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda program: "/usr/bin/" + program)
    apt = FakeApt({}, missing=set(rs.PACKAGES_BY_NAME))
    with pytest.raises(RuntimeError, match="no real-speech package could be fetched"):
        rs.make_real_speech_corpus(tmp_path / "out", cache=tmp_path / "cache", download=apt)
