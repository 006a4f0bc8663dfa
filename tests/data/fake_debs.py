"""Fakes for the Debian-package tests: speech-like and tone signals, real .deb files built from
folders (dpkg-deb --build), and an `apt-get download` stand-in."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from segue.data.debian import PackageError

#: The Asterisk packages' copyright file: one DEP-5 stanza per language.
ASTERISK_COPYRIGHT = """Format: http://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2003-2010, Allison Smith
License: CC-BY-SA-3.0

Files: ru-*
Copyright: 2010, Maxim
License: CC-BY-3.0

Files: debian/*
License: GPL-2+
"""


def speechlike(seconds: float, seed: int = 0, sr: int = 16000) -> np.ndarray:
    """A voiced, speech-like signal: a pulse train with a gliding pitch through formants that
    change every 120 ms, with a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 120.0 * (1 + 0.2 * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 6)))
    source = (np.cumsum(f0) / sr) % 1.0 - 0.5 + 0.05 * rng.standard_normal(n)
    out = np.zeros(n)
    step = int(0.12 * sr)
    for start in range(0, n, step):
        y = source[start : start + step]
        for formant in (rng.uniform(300, 900), rng.uniform(900, 2500)):
            w = 2 * np.pi * formant / sr
            y = lfilter([0.03], [1, -2 * 0.97 * np.cos(w), 0.97**2], y)
        out[start : start + step] = y
    out *= 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def beep(seconds: float = 0.3, freq: float = 1000.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_copyright(tree: Path, package: str, text: str = "Files: *\nLicense: GPL-2+\n") -> None:
    """The package's `usr/share/doc/<package>/copyright` in an unpacked `tree`."""
    doc = tree / "usr/share/doc" / package / "copyright"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def write_g722(path: Path, audio: np.ndarray) -> None:
    """`audio` (16 kHz float) as a raw G.722 file, as Asterisk ships its prompts (ffmpeg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "f32le", "-ar", "16000", "-ac",
                    "1", "-i", "-", "-f", "g722", "-y", str(path)],
                   input=audio.astype("<f4").tobytes(), check=True)


def build_deb(tree: Path, name: str, out: Path) -> Path:
    """A real .deb of `tree` (dpkg-deb --build)."""
    root = out / f"{name}-root"
    shutil.copytree(tree, root)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@t>\n"
        "Description: test\n")
    deb = out / f"{name}_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    shutil.rmtree(root)
    return deb


class FakeApt:
    """Stands in for `apt-get download`: copies prebuilt .debs, fails for `missing` names."""

    def __init__(self, debs: dict[str, Path], missing: set[str] = frozenset()):
        self.debs, self.missing, self.calls = debs, set(missing), []

    def __call__(self, name: str, folder: Path) -> Path:
        self.calls.append(name)
        if name in self.missing:
            raise PackageError(f"{name}: apt-get download failed (E: Unable to locate "
                                  f"package {name}); retry with: apt-get download {name}")
        folder.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(self.debs[name], folder))
