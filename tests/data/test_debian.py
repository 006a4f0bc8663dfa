"""Debian packages as data: fetching once, unpacking only what is wanted, licenses."""

from __future__ import annotations

import shutil

import pytest

from segue.data import debian
from tests.data.fake_debs import ASTERISK_COPYRIGHT, FakeApt, build_deb

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")



def test_package_license_per_language_stanza(tmp_path):
    doc = tmp_path / "usr/share/doc/asterisk-core-sounds-ru-g722/copyright"
    doc.parent.mkdir(parents=True)
    doc.write_text(ASTERISK_COPYRIGHT)
    assert debian.package_license(tmp_path, "asterisk-core-sounds-ru-g722", "ru") == "CC-BY-3.0"
    assert debian.package_license(tmp_path, "asterisk-core-sounds-ru-g722", "es") == "CC-BY-SA-3.0"
    assert debian.package_license(tmp_path, "missing-package") == ""


def test_package_license_of_a_free_text_copyright_file(tmp_path):
    doc = tmp_path / "usr/share/doc/fillets-ng-data-cs/copyright"
    doc.parent.mkdir(parents=True)
    doc.write_text("The license of the packaging is: BSD.\n\nCopyright:\n\n   This package is "
                   "free software; you can redistribute it and/or modify\n   it under the terms "
                   "of the GNU General Public License as published by\n   the Free Software "
                   "Foundation; version 2 dated June, 1991.\n\nFonts: GNU General Public "
                   "License as published by the Free Software Foundation; either version 2, or "
                   "(at your option) any later version.\n")
    assert debian.package_license(tmp_path, "fillets-ng-data-cs") == "GPL-2"
    doc.write_text("GNU Lesser General Public License, either version 2.1 or (at your option) "
                   "any later version")
    assert debian.package_license(tmp_path, "fillets-ng-data-cs") == "LGPL-2.1+"


def fake_tree(root):
    """A package tree: data to keep, music to leave out, the copyright file."""
    (root / "usr/share/game/script").mkdir(parents=True)
    (root / "usr/share/game/script/level.lua").write_text('dialogId("a", "font_small", "Hi")\n')
    (root / "usr/share/game/music").mkdir()
    (root / "usr/share/game/music/theme.ogg").write_bytes(b"OggS" + bytes(1000))
    (root / "usr/share/doc/game-data").mkdir(parents=True)
    (root / "usr/share/doc/game-data/copyright").write_text("Files: *\nLicense: GPL-2+\n")
    return root


@needs_dpkg
def test_unpack_keeps_only_the_wanted_members(tmp_path):
    deb = build_deb(fake_tree(tmp_path / "tree"), "game-data", tmp_path)
    package = debian.Package("game-data", ("usr/share/game/script/", debian.DOC))
    tree = debian.fetch_package(package, tmp_path / "cache", FakeApt({package.name: deb}))
    assert (tree / "usr/share/game/script/level.lua").read_text().startswith("dialogId")
    assert not (tree / "usr/share/game/music").exists()  # not unpacked
    assert debian.package_license(tree, "game-data") == "GPL-2+"
    assert (tree / ".complete").is_file()
    assert not list((tmp_path / "cache" / "debs").glob("*.deb"))  # the .deb is not kept
    # Fetched once: a second call does not download.
    apt = FakeApt({})
    assert debian.fetch_package(package, tmp_path / "cache", apt) == tree and apt.calls == []
    # A package holding none of the wanted files is an error, not an empty tree.
    nothing = debian.Package("game-data-2", ("usr/share/other/",))
    deb2 = build_deb(fake_tree(tmp_path / "tree2"), "game-data-2", tmp_path)
    with pytest.raises(debian.PackageError, match="holds none of the expected files"):
        debian.fetch_package(nothing, tmp_path / "cache", FakeApt({nothing.name: deb2}))


@needs_dpkg
def test_a_corrupt_deb_is_a_package_error(tmp_path):
    deb = tmp_path / "klettres-data_1_all.deb"
    deb.write_bytes(b"!<arch>\nnot a package")
    with pytest.raises(debian.PackageError, match="klettres-data"):
        debian.fetch_package(debian.Package("klettres-data"), tmp_path / "cache",
                             lambda name, folder: deb)
    assert not (tmp_path / "cache" / "klettres-data").exists()


def test_fetch_packages_reports_each_failure_and_goes_on(tmp_path):
    packages = [debian.Package("missing-one"), debian.Package("missing-two")]
    trees, errors = debian.fetch_packages(packages, tmp_path, FakeApt({}, {"missing-one",
                                                                        "missing-two"}))
    assert trees == {} and set(errors) == {"missing-one", "missing-two"}
    assert all("retry with" in message for message in errors.values())


def test_download_failure_names_the_package_and_the_retry(tmp_path, monkeypatch):
    import subprocess

    def fake_run(command, **kwargs):
        return subprocess.CompletedProcess(command, 100, "", "E: Unable to locate package x\n")

    monkeypatch.setattr(debian.subprocess, "run", fake_run)
    with pytest.raises(debian.PackageError) as error:
        debian.download_deb("klettres-data", tmp_path)
    message = str(error.value)
    assert message.startswith("klettres-data: apt-get download failed (E: Unable to locate")
    assert "retry with: apt-get update && apt-get download klettres-data" in message
    assert "\n" not in message
