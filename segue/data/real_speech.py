"""Recorded human speech from Debian packages: real voices beside the TTS corpus.

Every voice of `segue.data.speech` is synthetic; a model trained on them alone turns a real
speaker's prompt into a TTS-like voice. This corpus holds ~6 h of people speaking, taken from a
fixed set of Debian packages (fixed so that figures stay comparable):

    package                                  what                                 group
    fillets-ng-data-cs, fillets-ng-data-nl   acted game dialogue (Czech, Dutch)   language+character
    klettres-data                            letters and syllables, 20 languages  language folder
    asterisk-core-sounds-{es,fr,it,ru}-g722  telephony prompts, one voice each    the voice

* **Fetching.** `apt-get download` (no install, no root) into a cache (`~/.cache/segue/debian`,
  or `$SEGUE_CACHE/debian`), then the package's files are unpacked from `dpkg-deb --fsys-tarfile`
  into `cache/<package>/`; only what the corpus reads is kept (the scripts of `fillets-ng-data`,
  not its music and images). A package that cannot be fetched is reported in one line with the
  command to retry; the others still build.
* **Text.** Fillets lines come from `script/<level>/dialogs_<lang>.lua` in `fillets-ng-data`
  (`dialogId("id", "font_x", "<English>")` then `dialogStr("<translation>")`; `text_en` keeps
  the English). KLettres names each sound in its `sounds.xml`; where a file is not listed, its
  name is used when it reads as a letter or syllable. Asterisk ships no text in these packages:
  `text` is empty and `prompt` names the recording (`digits/7`, `vm-goodbye`), the same prompt
  in each of the four voices.
* **Groups.** A fillets character is the font its lines are drawn in (`font_small` is the small
  fish `m`, `font_big` the big fish `v`, others are side characters), falling back to the id's
  character field for files the scripts do not list; one group per language and character.
* **Processing.** Decode (libsndfile for Ogg, `ffmpeg` for G.722), downmix, resample to 16 kHz
  (soxr), high-pass at 40 Hz (some KLettres recordings carry a DC offset or rumble), trim silence
  to 0.15 s margins, peak-normalise, as the TTS corpus does. Files that are not speech are
  skipped and counted by reason: silence, short pure tones (beeps, two-tone chimes) and sounds
  with too little voicing (noise, hiss; `non_speech_reason`).
* **Splits.** Whole voices are held out (`HELD_OUT`): five test voices from three sources (an
  Asterisk voice, a fish, a side character with long lines, and KLettres' two English voices,
  which read the same letters) and two valid voices; every other group trains.

`make_real_speech_corpus` hands the items to the shared resumable runner (`segue.data.corpus`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from scipy.signal import butter, sosfilt

from segue import audio as audio_io
from segue.data.corpus import BuildSummary, CorpusItem, RenderError, SkipItem, build_corpus
from segue.data.speech import trim_silence

SAMPLE_RATE = 16000
FETCH_TIMEOUT_S = 600.0
DECODE_TIMEOUT_S = 60.0
HIGHPASS_HZ = 40.0


@dataclass(frozen=True)
class Package:
    """One Debian package of the corpus and the part of its files the corpus reads."""

    name: str
    source: str  # "fillets", "klettres" or "asterisk"
    keep: tuple[str, ...]  # path prefixes (relative, posix) of the members to unpack


_DOC = "usr/share/doc/"
FILLETS_ROOT = "usr/share/games/fillets-ng"
KLETTRES_ROOT = "usr/share/klettres"
ASTERISK_ROOT = "usr/share/asterisk/sounds"
FILLETS_LANGUAGES = ("cs", "nl")
ASTERISK_LANGUAGES = ("es", "fr", "it", "ru")

#: The fixed package set (do not add others: the corpus's figures must stay comparable).
PACKAGES: tuple[Package, ...] = (
    Package("fillets-ng-data", "fillets", (f"{FILLETS_ROOT}/script/", _DOC)),
    *(Package(f"fillets-ng-data-{lang}", "fillets", (f"{FILLETS_ROOT}/sound/", _DOC))
      for lang in FILLETS_LANGUAGES),
    Package("klettres-data", "klettres", (f"{KLETTRES_ROOT}/", _DOC)),
    *(Package(f"asterisk-core-sounds-{lang}-g722", "asterisk", (f"{ASTERISK_ROOT}/", _DOC))
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


class PackageError(RuntimeError):
    """A package that could not be fetched or unpacked (the message says how to retry)."""


def default_cache() -> Path:
    """`$SEGUE_CACHE/debian`, else `~/.cache/segue/debian`."""
    root = os.environ.get("SEGUE_CACHE") or Path.home() / ".cache" / "segue"
    return Path(root) / "debian"


# ---------------------------------------------------------------------------------- fetching


def _retry_hint(name: str) -> str:
    return f"retry with: apt-get update && apt-get download {name} (or re-run the same command)"


def _wanted(member: str, keep: Sequence[str]) -> bool:
    path = member.removeprefix("./")
    return any(path.startswith(prefix) for prefix in keep)


def unpack_deb(deb: Path, dest: Path, keep: Sequence[str] = ("",)) -> int:
    """Unpack the members of `deb` under the path prefixes `keep` into `dest` (made anew);
    returns the number of regular files written. Raises PackageError."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise PackageError(f"{deb.name}: `dpkg-deb` not found (a Debian/Ubuntu tool)") from None
    files = 0
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            for member in archive:
                if not (member.isfile() or member.isdir()) or not _wanted(member.name, keep):
                    continue
                archive.extract(member, dest, filter="data")
                files += member.isfile()
    except (tarfile.TarError, OSError) as error:
        proc.kill()
        raise PackageError(f"{deb.name}: cannot unpack ({error})") from None
    finally:
        proc.stdout.close()
        stderr = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        code = proc.wait()
    if code != 0:
        raise PackageError(f"{deb.name}: dpkg-deb failed ({stderr[-300:] or f'exit {code}'})")
    return files


def download_deb(name: str, folder: Path) -> Path:
    """`apt-get download NAME` into `folder`; the .deb's path. Raises PackageError."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{name}_*.deb"):
        old.unlink()
    try:
        result = subprocess.run(["apt-get", "download", name], cwd=folder, capture_output=True,
                                text=True, timeout=FETCH_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise PackageError(f"{name}: `apt-get` not found; {_retry_hint(name)}") from None
    except subprocess.TimeoutExpired:
        raise PackageError(f"{name}: download timed out; {_retry_hint(name)}") from None
    debs = sorted(folder.glob(f"{name}_*.deb"))
    if result.returncode != 0 or not debs:
        why = (result.stderr or result.stdout).strip().splitlines()
        why = [line for line in why if line.startswith("E:")] or why
        raise PackageError(f"{name}: apt-get download failed ({why[-1] if why else 'no .deb'}); "
                           f"{_retry_hint(name)}")
    return debs[-1]


Downloader = Callable[[str, Path], Path]


def fetch_package(package: Package, cache: Path, download: Downloader = download_deb) -> Path:
    """The unpacked tree of `package` in `cache/<name>/` (fetched once; reused afterwards).

    A tree is complete when its `.complete` marker exists: an interrupted unpack is redone.
    The .deb is deleted once unpacked (the tree is what is read).
    """
    tree = cache / package.name
    if (tree / ".complete").is_file():
        return tree
    deb = download(package.name, cache / "debs")
    staging = cache / f".{package.name}.partial"
    files = unpack_deb(deb, staging, package.keep)
    if files == 0:
        raise PackageError(f"{package.name}: {deb.name} holds none of the expected files "
                           f"(under {', '.join(package.keep)}); {_retry_hint(package.name)}")
    (staging / ".complete").write_text(f"{deb.name}\n")
    if tree.exists():
        shutil.rmtree(tree)
    staging.rename(tree)
    deb.unlink(missing_ok=True)
    return tree


def fetch_packages(cache: Path, names: Iterable[str] | None = None,
                   download: Downloader = download_deb) -> tuple[dict[str, Path], dict[str, str]]:
    """Fetch every package (or `names`): ({name: unpacked tree}, {name: one-line error})."""
    trees: dict[str, Path] = {}
    errors: dict[str, str] = {}
    for name in names or PACKAGES_BY_NAME:
        try:
            trees[name] = fetch_package(PACKAGES_BY_NAME[name], cache, download)
        except PackageError as error:
            errors[name] = str(error)
    return trees, errors


# ------------------------------------------------------------------------------- licenses


def package_license(tree: Path, package: str, language: str | None = None) -> str:
    """The license of a package's audio, from its Debian copyright file ("" if unknown).

    Takes the `License:` of the `Files:` stanza whose pattern matches `<language>-*` (the
    Asterisk packages share one copyright file with a stanza per language), else of `Files: *`;
    for a free-text copyright file, the first GNU license it names ("GPL-2", "GPL-2+").
    """
    path = tree / _DOC / package / "copyright"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    licenses: dict[str, str] = {}
    for stanza in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:\s*(.+)$", stanza, re.MULTILINE)
        found = re.search(r"^License:\s*(\S+)", stanza, re.MULTILINE)
        if files and found:
            for pattern in files.group(1).split():
                licenses.setdefault(pattern, found.group(1))
    if language and f"{language}-*" in licenses:
        return licenses[f"{language}-*"]
    if "*" in licenses:
        return licenses["*"]
    # Not machine-readable (fillets): the first GNU license the text names.
    found = _FREE_TEXT_GPL.search(" ".join(text.split()))
    if found:
        kind = "LGPL" if found.group(1) else "GPL"
        return f"{kind}-{found.group(3)}{'+' if found.group(4) else ''}"
    return ""


_FREE_TEXT_GPL = re.compile(
    r"GNU (Lesser |Library )?General Public License(?: as published by the Free Software "
    r"Foundation)?[;,]? (either )?version (\d(?:\.\d)?)(,? or \(at your option\) any later)?",
    re.IGNORECASE,
)


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
            items.append(_item(
                f"klettres-{folder.name}-{kind}-{path.stem}", f"klettres-{folder.name}", package,
                path.relative_to(tree).as_posix(), folder.name.split("_")[0],
                klettres_text(names.get(relative), path.stem), license_, unit=kind))
    return items


def asterisk_items(tree: Path, language: str) -> list[CorpusItem]:
    """Items of one `asterisk-core-sounds-<lang>-g722` package: one group, its voice."""
    package = f"asterisk-core-sounds-{language}-g722"
    license_ = package_license(tree, package, language)
    root = tree / ASTERISK_ROOT
    items = []
    for voice in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for path in sorted(voice.glob("**/*.g722")):
            prompt = path.relative_to(voice).with_suffix("").as_posix()
            items.append(_item(
                f"asterisk-{language}-{prompt.replace('/', '-')}", f"asterisk-{voice.name}",
                package, path.relative_to(tree).as_posix(), language, "", license_,
                prompt=prompt, voice=voice.name))
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
    queues = [by_group[g] for g in sorted(by_group)]
    depth = max((len(q) for q in queues), default=0)
    return [q[k] for k in range(depth) for q in queues if k < len(q)]


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


@functools.lru_cache(maxsize=4)
def _highpass(sample_rate: int, cutoff: float) -> np.ndarray:
    return butter(2, cutoff, "highpass", fs=sample_rate, output="sos")


def highpass(audio: np.ndarray, sample_rate: int = SAMPLE_RATE,
             cutoff: float = HIGHPASS_HZ) -> np.ndarray:
    """Remove DC and rumble below `cutoff` Hz (2nd-order Butterworth)."""
    audio = np.asarray(audio, dtype=np.float64)
    return sosfilt(_highpass(sample_rate, cutoff), audio - audio.mean()).astype(np.float32)


#: Frames of 30 ms (webrtcvad's longest); "active" frames are within 35 dB of the loudest.
_FRAME_S, _ACTIVE_DB = 0.03, -35.0
MIN_ACTIVE_S = 0.15
#: A pure tone: the strongest spectral peak (+-2 bins of a 1024-point FFT) holds this share of
#: the energy in most frames, at one or two frequencies only (beeps, two-tone chimes).
TONE_PEAK_SHARE, TONE_STABLE_SHARE, TONE_MAX_S = 0.9, 0.9, 1.0
#: Voiced frames: normalised autocorrelation above this at a lag of a 60-400 Hz pitch period.
VOICING_THRESHOLD, MIN_VOICED_SHARE = 0.5, 0.1


def voiced_share(frames: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Share of `frames` ([N, L] float) that are periodic at a speech pitch (60-400 Hz): the
    normalised autocorrelation peaks above VOICING_THRESHOLD at some lag in that range."""
    size = 1 << int(np.ceil(np.log2(2 * frames.shape[1])))
    centred = frames - frames.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(centred, size, axis=1)) ** 2
    autocorrelation = np.fft.irfft(power, size, axis=1)[:, : frames.shape[1]]
    # Unbiased (divide by the overlap) so that long lags are not penalised.
    overlap = frames.shape[1] - np.arange(frames.shape[1])
    normalised = autocorrelation / overlap / (autocorrelation[:, :1] / frames.shape[1] + 1e-20)
    low, high = int(sample_rate / 400), min(int(sample_rate / 60), frames.shape[1] // 2)
    return float(np.mean(normalised[:, low:high].max(axis=1) > VOICING_THRESHOLD))


def non_speech_reason(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str | None:
    """Why `audio` ([T] float, high-passed) is not speech, or None when it passes.

    "silence": under 0.15 s within 35 dB of its loudest 30 ms frame (or digital silence);
    "tone": under 1 s of sound whose energy sits at one or two frequencies (beeps, chimes);
    "no voice": under 10 % of the active frames are periodic at a speech pitch (noise,
    hiss, clicks).
    """
    frame = round(_FRAME_S * sample_rate)
    n = audio.size // frame
    if n == 0 or audio_io.is_silent(audio):
        return "silence"
    frames = audio[: n * frame].reshape(n, frame).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    active = frames[rms >= rms.max() * 10.0 ** (_ACTIVE_DB / 20.0)]
    if len(active) * _FRAME_S < MIN_ACTIVE_S:
        return "silence"
    spectra = np.abs(np.fft.rfft(active * np.hanning(frame), 1024, axis=1)) ** 2
    peaks = spectra.argmax(axis=1)
    bins = np.arange(spectra.shape[1])
    near = np.abs(bins[None, :] - peaks[:, None]) <= 2
    share = float(np.median((spectra * near).sum(1) / (spectra.sum(1) + 1e-20)))
    counts = np.bincount(peaks)
    two_main = np.sort(counts)[-2:].sum() / len(peaks)  # frames at the 2 commonest peak bins
    stable = max(two_main, float(np.mean(np.abs(peaks - np.median(peaks)) <= 1)))
    if (share >= TONE_PEAK_SHARE and stable >= TONE_STABLE_SHARE
            and len(active) * _FRAME_S < TONE_MAX_S):
        return "tone"
    if voiced_share(active, sample_rate) < MIN_VOICED_SHARE:
        return "no voice"
    return None


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


def check_tools() -> None:
    """Raise RuntimeError naming the missing programs (apt-get, dpkg-deb, ffmpeg)."""
    missing = [p for p in ("apt-get", "dpkg-deb", "ffmpeg") if shutil.which(p) is None]
    if missing:
        raise RuntimeError(f"the real-speech corpus needs {', '.join(missing)} (Debian/Ubuntu; "
                           "ffmpeg: sudo apt-get install -y --no-install-recommends ffmpeg)")


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
    if download is download_deb:
        check_tools()
    elif shutil.which("ffmpeg") is None:
        raise RuntimeError("the real-speech corpus needs ffmpeg: "
                           "sudo apt-get install -y --no-install-recommends ffmpeg")
    cache = Path(cache) if cache is not None else default_cache()
    trees, errors = fetch_packages(cache, download=download)
    items = real_speech_items(trees)
    if not items:
        raise RuntimeError("no real-speech package could be fetched:\n" + "\n".join(
            errors.values()))
    build = build_corpus(out_dir, items, RealSpeechRenderer(cache), hours=hours,
                         sample_rate=SAMPLE_RATE, workers=workers, desc="real speech",
                         max_failures=None)
    return RealSpeechSummary(build, errors)
