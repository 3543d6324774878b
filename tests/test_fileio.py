"""The one atomic file writer (starloom.astro.fileio): all or nothing, mode kept."""
import os
import stat

import pytest

from starloom.astro.fileio import atomic_write, copy_atomic, write_text_atomic


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_gets_the_umask_mode_not_mkstemps(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.json") == 0o644
    assert (tmp_path / "a.json").read_text() == "{}"


def test_replacing_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "graph.json"
    path.write_text("old")
    os.chmod(path, 0o640)
    write_text_atomic(path, "new")
    assert path.read_text() == "new"
    assert _mode(path) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "frame.fits"
    path.write_bytes(b"old content")
    with pytest.raises(RuntimeError):
        with atomic_write(path, "wb") as f:
            f.write(b"half of the new")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.fits"]


def test_copy_keeps_content_and_mtime(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 10)
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    dst = copy_atomic(src, tmp_path / "dst.bin")
    assert dst.read_bytes() == src.read_bytes()
    assert os.stat(dst).st_mtime_ns == os.stat(src).st_mtime_ns


def test_text_mode_writes_utf8_without_newline_translation(tmp_path):
    path = tmp_path / "t.txt"
    write_text_atomic(path, "Ångström\r\nline")
    assert path.read_bytes() == "Ångström\r\nline".encode("utf-8")


def test_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "x", "a"):
            pass
