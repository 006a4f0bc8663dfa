"""Recorded human speech from Debian packages: real voices beside the TTS corpus.

Every voice of `segue.data.speech` is synthetic; a model trained on them alone turns a real
speaker's prompt into a TTS-like voice. This corpus holds 5.8 h of people speaking, taken from a
fixed set of Debian packages (fixed so that figures stay comparable):

    package                                  what                                 group
    fillets-ng-data-cs, fillets-ng-data-nl   acted game dialogue (Czech, Dutch)   language+character
    klettres-data                            letters and syllables, 20 languages  language folder
    asterisk-core-sounds-{es,fr,it,ru}-g722  telephony prompts, one voice each    the voice

* **Fetching** (`segue.data.debian`). `apt-get download` (no install, no root) into a cache
  (`~/.cache/segue/debian`, or `$SEGUE_CACHE_DIR/debian`), then the package's files are unpacked
  from `dpkg-deb --fsys-tarfile` into `cache/<package>/`; only what the corpus reads is kept
  (the scripts of `fillets-ng-data`, not its music and images). A package that cannot be
  fetched is reported in one line with the command to retry; the others still build.
* **Text.** Fillets lines come from `script/<level>/dialogs_<lang>.lua` in `fillets-ng-data`
  (`dialogId("id", "font_x", "<English>")` then `dialogStr("<translation>")`; `text_en` keeps
  the English). KLettres names each sound in its `sounds.xml`; where a file is not listed, its
  name is used when it reads as a letter or syllable. Asterisk ships no text in these packages:
  `prompt` names the recording (`digits/7`, `vm-goodbye`), the same prompt in each of the four
  voices, and `text` is filled only where the name says it (letters, numbers). Letters and
  syllables carry a `sentence_id` (`en:b`) shared by every voice of a language that says them
  (KLettres' `en` and `en_GB`, Asterisk's and KLettres' letters), so the semantic-token
  evaluation can compare voices on the same content.
* **Groups.** A fillets character is the font its lines are drawn in (`font_small` is the small
  fish `m`, `font_big` the big fish `v`, others are side characters), falling back to the id's
  character field for files the scripts do not list; one group per language and character.
* **Processing.** Decode (libsndfile for Ogg, `ffmpeg` for G.722), downmix, resample to 16 kHz
  (soxr), high-pass at 40 Hz (some KLettres recordings carry a DC offset or rumble), trim silence
  to 0.15 s margins, peak-normalise, as the TTS corpus does. Files that are not speech are
  skipped and counted by reason: silence, short pure tones (beeps, two-tone chimes) and sounds
  with too little voicing (noise, hiss; `segue.data.voicing`).
* **Splits.** Whole voices are held out (`HELD_OUT`): five test voices from three sources (an
  Asterisk voice, a fish, a side character with long lines, and KLettres' two English voices,
  which read the same letters) and two valid voices; every other group trains.

`make_real_speech_corpus` hands the items to the shared resumable runner (`segue.data.corpus`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from segue import audio as audio_io
from segue.data.corpus import (
    BuildSummary,
    CorpusItem,
    RenderError,
    SkipItem,
    build_corpus,
    interleave,
)
from segue.data.debian import (
    DOC,
    Downloader,
    Package,
    default_cache,
    download_deb,
    fetch_packages,
    package_license,
)
from segue.data.speech import trim_silence
from segue.data.voicing import highpass, non_speech_reason

SAMPLE_RATE = 16000
DECODE_TIMEOUT_S = 60.0

FILLETS_ROOT = "usr/share/games/fillets-ng"
KLETTRES_ROOT = "usr/share/klettres"
ASTERISK_ROOT = "usr/share/asterisk/sounds"
FILLETS_LANGUAGES = ("cs", "nl")
ASTERISK_LANGUAGES = ("es", "fr", "it", "ru")

#: The fixed package set (do not add others: the corpus's figures must stay comparable).
PACKAGES: tuple[Package, ...] = (
    Package("fillets-ng-data", (f"{FILLETS_ROOT}/script/", DOC)),  # the scripts, not the music
    *(Package(f"fillets-ng-data-{lang}", (f"{FILLETS_ROOT}/sound/", DOC))
      for lang in FILLETS_LANGUAGES),
    Package("klettres-data", (f"{KLETTRES_ROOT}/", DOC)),
    *(Package(f"asterisk-core-sounds-{lang}-g722", (f"{ASTERISK_ROOT}/", DOC))
      for lang in ASTERISK_LANGUAGES),
)
PACKAGES_BY_NAME = {p.name: p for p in PACKAGES}

#: Whole voices held out of training (see the module docstring); every other group trains.
HELD_OUT: dict[str, tuple[str, ...]] = {
    "test": (
        "asterisk-it_IT_m_Carlo",
        "fillets-nl-v",
        "fillets-cs-statue",
        "klettres-en",
        "klettres-en_GB",
    ),
    "valid": ("fillets-cs-robodog", "klettres-fr"),
}


# ----------------------------------------------------------------------------------- texts

_LUA_STRING = r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\''
_LUA_CALL = re.compile(
    r"\b(dialogId|dialogStr)\s*\(\s*((?:(?:" + _LUA_STRING + r")\s*(?:\.\.\s*|,\s*)?)*)\)",
    re.DOTALL,
)
_LUA_ARGUMENT = re.compile(r"((?:(?:" + _LUA_STRING + r")\s*(?:\.\.\s*)?)+)\s*(?:,|$)")
_LUA_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def _lua_unescape(body: str) -> str:
    def replace(match: re.Match) -> str:
        escaped = match.group(1)
        if escaped.isdigit():
            return chr(int(escaped))
        return _LUA_ESCAPES.get(escaped, escaped)

    return re.sub(r"\\(\d{1,3}|.)", replace, body, flags=re.DOTALL)


def _lua_arguments(arguments: str) -> list[str]:
    """The string arguments of a call (`"a" .. "b"` concatenations joined)."""
    values = []
    for match in _LUA_ARGUMENT.finditer(arguments.strip()):
        parts = re.findall(_LUA_STRING, match.group(1))
        values.append("".join(_lua_unescape(p[1:-1]) for p in parts))
    return values


@dataclass(frozen=True)
class DialogLine:
    """One line of a fillets level: its font (the character) and its text."""

    id: str
    font: str
    english: str
    text: str  # the translation of `dialogs_<lang>.lua` (for Czech, the original line)


def parse_dialogs(source: str) -> dict[str, DialogLine]:
    """`dialogId(id, font, english)` + the `dialogStr(line)` after it -> {id: DialogLine}.

    Strings may span calls over several lines, use either quote and Lua escapes; an id with no
    dialogStr keeps its English text as `text` (the English dialog files have none).
    """
    lines: dict[str, DialogLine] = {}
    current: DialogLine | None = None
    for match in _LUA_CALL.finditer(source):
        args = _lua_arguments(match.group(2))
        if match.group(1) == "dialogId":
            if not args:
                current = None
                continue
            ident, font, english = (*args, "", "")[:3]
            current = DialogLine(ident, font, english, english)
            lines[ident] = current
        elif current is not None and args:
            current = DialogLine(current.id, current.font, current.english, args[0])
            lines[current.id] = current
            current = None
    return lines


_FISH = {"font_small": "m", "font_big": "v"}


def fillets_character(ident: str, font: str) -> str:
    """Character name of a dialog line: `m`/`v` for the fish, else the font without `font_`;
    from the id's character field (`lev-m-word` or `m-word`) when the font is unknown."""
    if font in _FISH:
        return _FISH[font]
    if font.startswith("font_") and len(font) > 5:
        return _safe(font[5:])
    fields = ident.split("-")
    for field in (fields[1] if len(fields) > 2 else None, fields[0], fields[-1]):
        if field in ("m", "v"):
            return field
    return "other"


def klettres_names(sounds_xml: Path) -> dict[str, str]:
    """{file path relative to the klettres folder: the sound's name} from a `sounds.xml`."""
    try:
        root = ET.fromstring(sounds_xml.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ET.ParseError):
        return {}
    return {s.get("file", ""): s.get("name", "") for s in root.iter("sound") if s.get("file")}


_READABLE = re.compile(r"^[^\W\d_]{1,12}$")


def klettres_text(name_in_xml: str | None, stem: str) -> str:
    """The letter or syllable: as `sounds.xml` names it, else the file name when it reads as one
    (`dog`, `ch`; not `a-12` or `ad-3`), else ""."""
    if name_in_xml:
        return name_in_xml.strip()
    return stem if _READABLE.match(stem) else ""


# ----------------------------------------------------------------------------------- items

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_") or "x"


def _split_of(group: str) -> str:
    for split, groups in HELD_OUT.items():
        if group in groups:
            return split
    return "train"


def _item(uid: str, group: str, package: str, source_file: str, language: str, text: str,
          license_: str, **extra: object) -> CorpusItem:
    meta = {"text": text, "language": language, "source": package, "license": license_,
            "source_file": f"{package}/{source_file}", **extra}
    return CorpusItem(uid=_safe(uid), group=group, split=_split_of(group), meta=meta)


def fillets_items(sounds: Path, scripts: Path | None, language: str) -> list[CorpusItem]:
    """Items of one fillets language: `sounds` is the unpacked `fillets-ng-data-<lang>` tree,
    `scripts` that of `fillets-ng-data` (None: no texts, characters from the ids)."""
    package = f"fillets-ng-data-{language}"
    license_ = package_license(sounds, package)
    sound_root = sounds / FILLETS_ROOT / "sound"
    script_root = None if scripts is None else scripts / FILLETS_ROOT / "script"

    def read(script: Path) -> dict[str, DialogLine]:
        try:
            return parse_dialogs(script.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return {}

    # A level's own script first; then every script of the language (`sound/share/border`
    # is voiced from `script/share/border_dialogs_<lang>.lua`).
    shared: dict[str, DialogLine] = {}
    if script_root is not None:
        for script in sorted(script_root.glob(f"**/*dialogs_{language}.lua")):
            for ident, line in read(script).items():
                shared.setdefault(ident, line)
    dialogs: dict[str, dict[str, DialogLine]] = {}
    items = []
    for path in sorted(sound_root.glob(f"**/{language}/*.ogg")):
        level = path.parent.parent.relative_to(sound_root).as_posix()
        if level not in dialogs:
            dialogs[level] = {} if script_root is None else read(
                script_root / level / f"dialogs_{language}.lua")
        ident = path.stem
        line = dialogs[level].get(ident) or shared.get(ident)
        character = fillets_character(ident, line.font if line else "")
        items.append(_item(
            f"fillets-{language}-{level}-{ident}", f"fillets-{language}-{character}", package,
            path.relative_to(sounds).as_posix(), language, line.text.strip() if line else "",
            license_, text_en=line.english.strip() if line else "", character=character,
            level=level, dialog_id=ident))
    return items


def klettres_items(tree: Path) -> list[CorpusItem]:
    """Items of `klettres-data`: one group per language folder."""
    package = "klettres-data"
    license_ = package_license(tree, package)
    root = tree / KLETTRES_ROOT
    items = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        names = klettres_names(folder / "sounds.xml")
        for path in sorted(folder.glob("*/*.ogg")):
            relative = path.relative_to(root).as_posix()
            kind = path.parent.name  # alpha (letters) or syllab (syllables)
            language = folder.name.split("_")[0]
            text = klettres_text(names.get(relative), path.stem)
            extra = {"sentence_id": content_id(language, text)} if text else {}
            items.append(_item(
                f"klettres-{folder.name}-{kind}-{path.stem}", f"klettres-{folder.name}", package,
                path.relative_to(tree).as_posix(), language, text, license_, unit=kind, **extra))
    return items


def content_id(language: str, text: str) -> str:
    """What is said, as an id shared by every voice that says it (`sentence_id`, which the
    semantic evaluation pairs voices by): `en:b`, `it:a`."""
    return f"{language}:{text.strip().lower()}"


_ASTERISK_LETTER = re.compile(r"^letters/([a-z])$")
_ASTERISK_NUMBER = re.compile(r"^digits/(\d+)$")


def asterisk_text(prompt: str) -> str:
    """The text of the prompts whose name says it: `letters/b` -> "B", `digits/7` -> "7"."""
    letter = _ASTERISK_LETTER.match(prompt)
    if letter:
        return letter.group(1).upper()
    number = _ASTERISK_NUMBER.match(prompt)
    return number.group(1) if number else ""


def asterisk_items(tree: Path, language: str) -> list[CorpusItem]:
    """Items of one `asterisk-core-sounds-<lang>-g722` package: one group, its voice."""
    package = f"asterisk-core-sounds-{language}-g722"
    license_ = package_license(tree, package, language)
    root = tree / ASTERISK_ROOT
    items = []
    for voice in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for path in sorted(voice.glob("**/*.g722")):
            prompt = path.relative_to(voice).with_suffix("").as_posix()
            text = asterisk_text(prompt)
            extra = {"sentence_id": content_id(language, text)} if text else {}
            items.append(_item(
                f"asterisk-{language}-{prompt.replace('/', '-')}", f"asterisk-{voice.name}",
                package, path.relative_to(tree).as_posix(), language, text, license_,
                prompt=prompt, voice=voice.name, **extra))
    return items


def real_speech_items(trees: dict[str, Path]) -> list[CorpusItem]:
    """Every item of the fetched packages, interleaved so that any prefix of the list spreads
    over all groups (a corpus smaller than the whole keeps every voice): round-robin over the
    groups, each group's files in a fixed pseudo-random order."""
    items: list[CorpusItem] = []
    scripts = trees.get("fillets-ng-data")
    for lang in FILLETS_LANGUAGES:
        if f"fillets-ng-data-{lang}" in trees:
            items += fillets_items(trees[f"fillets-ng-data-{lang}"], scripts, lang)
    if "klettres-data" in trees:
        items += klettres_items(trees["klettres-data"])
    for lang in ASTERISK_LANGUAGES:
        if f"asterisk-core-sounds-{lang}-g722" in trees:
            items += asterisk_items(trees[f"asterisk-core-sounds-{lang}-g722"], lang)
    by_group: dict[str, list[CorpusItem]] = {}
    for item in items:
        by_group.setdefault(item.group, []).append(item)
    for group in by_group.values():
        group.sort(key=lambda i: hashlib.sha256(i.uid.encode()).digest())
    return interleave([by_group[g] for g in sorted(by_group)])


# ------------------------------------------------------------------------------- rendering


class NotSpeech(SkipItem):
    """A file that holds no speech (silence, a tone, no voice): skipped and counted."""


def decode_g722(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A raw G.722 file as float32 mono at `sample_rate`, through ffmpeg (libsndfile cannot)."""
    command = ["ffmpeg", "-nostdin", "-v", "error", "-f", "g722", "-i", str(path),
               "-ar", str(sample_rate), "-ac", "1", "-f", "f32le", "-"]
    try:
        result = subprocess.run(command, capture_output=True, timeout=DECODE_TIMEOUT_S,
                                check=False)
    except FileNotFoundError:
        raise RenderError("`ffmpeg` not found (needed for G.722): "
                          "sudo apt-get install -y ffmpeg") from None
    except subprocess.TimeoutExpired:
        raise RenderError(f"{path}: ffmpeg timed out") from None
    if result.returncode != 0:
        why = result.stderr.decode(errors="replace").strip().splitlines()
        raise RenderError(f"{path}: ffmpeg cannot decode it ({why[-1] if why else 'error'})")
    audio = np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)
    if audio.size == 0:
        raise RenderError(f"{path}: contains no samples (zero-length audio)")
    if not np.isfinite(audio).all():
        raise RenderError(f"{path}: NaN or infinite samples")
    return audio


class RealSpeechRenderer:
    """Picklable `render(item)` for `build_corpus`: reads `item.meta["source_file"]` under the
    package cache and returns float32 [T] at 16 kHz (see the module docstring)."""

    def __init__(self, cache: str | os.PathLike):
        self.cache = Path(cache)

    def __call__(self, item: CorpusItem) -> np.ndarray:
        path = self.cache / PurePosixPath(str(item.meta["source_file"]))
        if path.suffix == ".g722":
            audio = decode_g722(path, SAMPLE_RATE)
        else:
            try:
                audio = audio_io.load(path, SAMPLE_RATE)
            except audio_io.AudioError as error:
                raise RenderError(str(error)) from None
        audio = highpass(audio, SAMPLE_RATE)
        reason = non_speech_reason(audio, SAMPLE_RATE)
        if reason is not None:
            raise NotSpeech(reason)
        audio = trim_silence(audio, SAMPLE_RATE)
        return audio_io.normalize_audio(audio, "peak")


# ----------------------------------------------------------------------------------- corpus


def check_tools(programs: tuple[str, ...]) -> None:
    """Raise RuntimeError naming the missing `programs`."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise RuntimeError(f"the real-speech corpus needs {', '.join(missing)} (Debian/Ubuntu; "
                           "ffmpeg: sudo apt-get install -y --no-install-recommends ffmpeg)")


def check_fetch_tools(download: Downloader = download_deb) -> None:
    """Raise RuntimeError naming what a build from Debian packages lacks: apt-get and dpkg-deb
    fetch the packages (unless another `download` is given), ffmpeg decodes G.722."""
    check_tools(("apt-get", "dpkg-deb", "ffmpeg") if download is download_deb else ("ffmpeg",))


@dataclass
class RealSpeechSummary:
    """What `make_real_speech_corpus` did: the corpus build and the packages that failed."""

    build: BuildSummary
    package_errors: dict[str, str]

    def __str__(self) -> str:
        lines = [str(self.build)]
        lines += [f"error: package {error}" for error in self.package_errors.values()]
        return "\n".join(lines)


def make_real_speech_corpus(out_dir: str | os.PathLike, hours: float | None = None,
                            workers: int | None = None, cache: str | os.PathLike | None = None,
                            download: Downloader = download_deb) -> RealSpeechSummary:
    """Fetch the packages and build the corpus in `out_dir` (resumable; see the module doc).

    `hours=None` takes every file. Packages that cannot be fetched are reported in the
    summary (`package_errors`); the corpus is built from the others. Raises RuntimeError when
    no package could be fetched.
    """
    check_fetch_tools(download)
    cache = Path(cache) if cache is not None else default_cache()
    trees, errors = fetch_packages(PACKAGES, cache, download)
    items = real_speech_items(trees)
    if not items:
        raise RuntimeError("no real-speech package could be fetched:\n" + "\n".join(
            errors.values()))
    build = build_corpus(out_dir, items, RealSpeechRenderer(cache), hours=hours,
                         sample_rate=SAMPLE_RATE, workers=workers, desc="real speech",
                         max_failures=None)
    return RealSpeechSummary(build, errors)
