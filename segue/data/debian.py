"""Debian packages as data: fetch one with `apt-get download` (no install, no root), unpack the
part of it that is wanted with `dpkg-deb --fsys-tarfile`, read its license.

A package's tree lands in `cache/<name>/` once, marked complete by `cache/<name>/.complete`; an
interrupted unpack is redone, a complete one reused. Every failure is a `PackageError` whose
one-line message names the package and the command to retry.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from segue.config import cache_dir
from segue.errors import StateError

FETCH_TIMEOUT_S = 600.0
DOC = "usr/share/doc/"


@dataclass(frozen=True)
class Package:
    """A Debian package and the part of its files to unpack."""

    name: str
    keep: tuple[str, ...] = ("",)  # path prefixes (relative, posix) of the members to unpack


class PackageError(StateError):
    """A package that could not be fetched or unpacked (the message says how to retry)."""


def default_cache() -> Path:
    """`debian/` in segue's cache folder (`$SEGUE_CACHE_DIR`, default `~/.cache/segue`)."""
    return cache_dir() / "debian"


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



def fetch_packages(
    packages: Iterable[Package], cache: Path, download: Downloader = download_deb
) -> tuple[dict[str, Path], dict[str, str]]:
    """Fetch `packages`: ({name: unpacked tree}, {name: one-line error}); one failure does not
    stop the others."""
    trees: dict[str, Path] = {}
    errors: dict[str, str] = {}
    for package in packages:
        try:
            trees[package.name] = fetch_package(package, cache, download)
        except PackageError as error:
            errors[package.name] = str(error)
    return trees, errors


def package_license(tree: Path, package: str, language: str | None = None) -> str:
    """The license of a package's audio, from its Debian copyright file ("" if unknown).

    Takes the `License:` of the `Files:` stanza whose pattern matches `<language>-*` (the
    Asterisk packages share one copyright file with a stanza per language), else of `Files: *`;
    for a free-text copyright file, the first GNU license it names ("GPL-2", "GPL-2+").
    """
    path = tree / DOC / package / "copyright"
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

