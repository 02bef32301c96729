"""The shared atomic-write and cached-reload helpers of the users and keys files."""

import os
import stat

import pytest

from sysadmd.auth.filestore import CachedFile
from sysadmd.util import files
from sysadmd.util.files import atomic_write, make_private_dirs


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_creates_private_file_without_leftovers(tmp_path):
    """The file gets exactly mode 0600 and no temporary file stays behind."""
    path = tmp_path / "data"
    old_umask = os.umask(0)
    try:
        atomic_write(str(path), "hello\n")
    finally:
        os.umask(old_umask)
    assert path.read_text() == "hello\n"
    assert _mode(path) == 0o600
    assert os.listdir(tmp_path) == ["data"]


def test_atomic_write_failure_keeps_old_content(tmp_path, monkeypatch):
    """A failure before the rename leaves the old file intact and removes the temp file."""
    path = tmp_path / "data"
    path.write_text("old\n")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        atomic_write(str(path), "new\n")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["data"]


def test_cached_file_parses_only_when_changed(tmp_path):
    """An unchanged file is not parsed again; a replaced one is."""
    path = tmp_path / "data"
    calls = []

    def parse(text):
        calls.append(text)
        return text.upper()

    cached = CachedFile(str(path), parse)
    assert cached.read() == ""
    assert cached.read() == ""
    assert calls == [""]
    atomic_write(str(path), "one")
    assert cached.read() == "ONE"
    assert cached.read() == "ONE"
    assert calls == ["", "one"]
    # Same size, written right after: the new inode still tells it apart.
    atomic_write(str(path), "two")
    assert cached.read() == "TWO"
    os.unlink(path)
    assert cached.read() == ""


def test_update_rewrites_and_returns_result(tmp_path):
    """update() stores the edited text and returns what the edit returned."""
    path = tmp_path / "data"
    cached = CachedFile(str(path), lambda text: text.splitlines())
    assert cached.update(lambda text: (text + "a\n", "done")) == "done"
    cached.update(lambda text: (text + "b\n", None))
    assert cached.read() == ["a", "b"]
    assert _mode(path) == 0o600


def test_update_refuses_to_rewrite_unparsable_file(tmp_path):
    """A damaged file makes update() fail before the edit runs."""
    path = tmp_path / "data"
    path.write_text("broken")

    def parse(text):
        if text == "broken":
            raise ValueError("damaged")
        return text

    edits = []
    with pytest.raises(ValueError):
        CachedFile(str(path), parse).update(lambda text: edits.append(text))
    assert edits == []
    assert path.read_text() == "broken"


def test_update_without_change_does_not_create_file(tmp_path):
    """An edit that changes nothing does not write (a missing file stays missing)."""
    path = tmp_path / "data"
    CachedFile(str(path), str).update(lambda text: (text, 0))
    assert not path.exists()


def test_make_private_dirs_makes_every_level_0700(tmp_path):
    """Every created directory, not only the last, is private."""
    target = tmp_path / "a" / "b" / "c"
    make_private_dirs(str(target))
    for directory in (tmp_path / "a", tmp_path / "a" / "b", target):
        assert _mode(directory) == 0o700
    make_private_dirs(str(target))
