"""A cache that can be trusted (issue 11): keys that change with the code, damaged entries that
are recomputed, manifests that cannot write outside the run, a store that can be moved, and
keys that do not depend on when a file was written."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.nddata import CCDData

from starloom.astro.fileio import sha256_json
from starloom.astro.frames import FrameSeries
from starloom.cli.main import main
from starloom.graph_runtime import cache as cache_mod
from starloom.graph_runtime.cache import Cache, CacheError, Entry, code_identity, node_key
from starloom.graph_runtime.cache_maintenance import parse_age, parse_size
from starloom.graph_runtime.events import Event
from starloom.graph_runtime.graph import plan
from starloom.graph_runtime.node import Node, Params, Port
from starloom.graph_runtime.registry import Registry
from starloom.nodes import register_all
from starloom.serialization import GraphDocument


class Source(Node):
    """Three small in-memory frames."""

    type_id = "test.rsource"
    category = "test"

    class Params(Params):
        level: float = 1.0

    outputs = {"frames": Port("FrameSeries")}

    def run(self, ctx, params):
        frames = [CCDData(np.full((8, 8), params.level + i, np.float32), unit="adu")
                  for i in range(3)]
        return {"frames": FrameSeries.from_frames(frames, ["a", "b", "c"])}


class AddOffset(Node):
    """Per frame: adds 10 and writes an artifact file (restored on a hit)."""

    type_id = "test.radd"
    category = "test"
    per_frame = "frames"
    inputs = {"frames": Port("FrameSeries")}
    outputs = {"frames": Port("FrameSeries")}

    def run(self, ctx, params, frame):
        ctx.artifact_path(f"{ctx.frame}.txt").write_text(ctx.frame)
        return {"frames": CCDData(frame.data + 10, unit=frame.unit, meta=frame.header.copy())}


@pytest.fixture
def registry():
    reg = Registry()
    register_all(reg)
    reg.add(Source)
    reg.add(AddOffset)
    return reg


def _doc(nodes, edges) -> GraphDocument:
    return GraphDocument.model_validate({
        "nodes": [{"id": i, "type": t, "version": 1, "params": p} for i, t, p in nodes],
        "edges": [{"from": a, "to": b} for a, b in edges]})


def _graph():
    return _doc([("src", "test.rsource", {}), ("add", "test.radd", {}),
                 ("stack", "stacking.combine", {"method": "average", "rejection": "none",
                                                "normalization": "none", "weights": "none"})],
                [("src.frames", "add.frames"), ("add.frames", "stack.frames")])


def _run(registry, cache, run_dir, graph=None, force=()):
    from starloom.graph_runtime.run import Run
    events = []
    run = Run(run_dir, cache, force=set(force), listeners=[events.append])
    res = run.execute(plan(graph or _graph(), registry))
    assert res.status == "ok", res.error
    return res, events


def _warnings(events):
    return [e["message"] for e in events if e["event"] == Event.WARNING]


def _entries(root: Path, node: str, frame=None) -> list[Path]:
    out = []
    for m in (root / "objects").glob("*/*/manifest.json"):
        man = json.loads(m.read_text())
        if man["node"] == node and man.get("frame") == frame and "rejected" not in man:
            out.append(m.parent)
    return out


# --- key material ------------------------------------------------------------------------------
def test_key_changes_with_implementation_and_library_versions(monkeypatch):
    def key():
        return node_key("x.y", 1, {"a": 1}, {}, None, code_identity(AddOffset))[0]

    base = key()
    assert code_identity(AddOffset) == {"implementation": 1, "libraries": {}}
    monkeypatch.setattr(AddOffset, "implementation", 2)
    bumped = key()
    assert bumped != base
    monkeypatch.setattr(AddOffset, "libraries", ("astropy",))
    with_lib = key()
    assert with_lib != bumped
    assert code_identity(AddOffset)["libraries"]["astropy"]  # installed, so a version
    monkeypatch.setattr(cache_mod, "library_version", lambda name: "0.0.1")
    assert key() != with_lib  # another astropy version, another key


def test_built_in_nodes_declare_their_libraries(registry):
    for cls in registry:
        if cls.type_id.startswith("test."):
            continue
        assert cls.libraries, cls.type_id
        assert isinstance(cls.implementation, int)


def test_bumped_implementation_recomputes(tmp_path, registry, monkeypatch):
    cache = Cache(tmp_path / "cache")
    first, _ = _run(registry, cache, tmp_path / "r1")
    monkeypatch.setattr(AddOffset, "implementation", 2)
    again, _ = _run(registry, cache, tmp_path / "r2")
    assert "add" in again.executed and again.frames_computed == 3 and "src" in again.cached


# --- damaged entries ---------------------------------------------------------------------------
def _flip_last_byte_of_data(path: Path):
    raw = bytearray(path.read_bytes())
    raw[2880 + 10] ^= 0x01  # inside the first data block: same size, other content
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_frame_file_is_recomputed_with_a_warning(tmp_path, registry, damage):
    root = tmp_path / "cache"
    first, _ = _run(registry, Cache(root), tmp_path / "r1")
    expected = first.outputs["stack"]["image"].data.copy()
    (entry,) = _entries(root, "add", frame="b")
    fits_file = entry / "frames.fits"
    if damage == "flip":
        _flip_last_byte_of_data(fits_file)
    elif damage == "truncate":
        fits_file.write_bytes(fits_file.read_bytes()[:1000])
    else:
        fits_file.unlink()
    # A new Cache object, as a new process would have: hashes are checked on first use.
    res, events = _run(registry, Cache(root), tmp_path / "r2")
    msgs = _warnings(events)
    assert len(msgs) == 1, msgs
    assert entry.name[:12] in msgs[0] and "node 'add'" in msgs[0] and "frame 'b'" in msgs[0]
    assert "recomputed" in msgs[0]
    assert res.frames_computed == 1 and res.frames_cached == 2
    assert np.array_equal(res.outputs["stack"]["image"].data, expected)
    # Replaced: a third run finds everything intact and cached.
    third, events = _run(registry, Cache(root), tmp_path / "r3")
    assert not _warnings(events) and third.executed == [] and third.frames_computed == 0


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "altered", "delete"])
def test_damaged_manifest_is_a_miss_naming_the_file(tmp_path, registry, damage):
    root = tmp_path / "cache"
    _run(registry, Cache(root), tmp_path / "r1")
    (entry,) = _entries(root, "stack")
    manifest = entry / "manifest.json"
    text = manifest.read_text()
    if damage == "truncate":
        manifest.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        manifest.write_bytes(b"\xff\xfe\x00garbage" * 10)
    elif damage == "empty":
        manifest.write_text("")
    elif damage == "altered":
        manifest.write_text(text.replace('"node": "stack"', '"node": "stacK"'))
    else:
        manifest.unlink()
    res, events = _run(registry, Cache(root), tmp_path / "r2")
    assert res.executed == ["stack"]
    (msg,) = _warnings(events)
    assert str(manifest) in msg and entry.name[:12] in msg
    assert "JSONDecodeError" not in msg


def test_put_replaces_an_existing_entry_and_force_rewrites(tmp_path, registry):
    root = tmp_path / "cache"
    cache = Cache(root)
    _run(registry, cache, tmp_path / "r1")
    (entry,) = _entries(root, "stack")
    stored_at = json.loads((entry / "manifest.json").read_text())["stored_at"]
    (entry / "image.fits").write_bytes(b"x" * 10)  # damaged; --force must not keep it
    res, _ = _run(registry, cache, tmp_path / "r2", force=["stack"])
    assert res.executed == ["stack"]
    (entry2,) = _entries(root, "stack")
    assert entry2 == entry
    assert json.loads((entry / "manifest.json").read_text())["stored_at"] > stored_at
    assert Cache(root).lookup(entry.name) is not None  # intact again, hashes and all


def test_garbage_fingerprint_database_is_recreated_and_cleared(tmp_path):
    root = tmp_path / "cache"
    data = tmp_path / "f.bin"
    data.write_bytes(b"hello")
    db = root / "fingerprints.sqlite"
    root.mkdir()
    db.write_bytes(b"this is not a database" * 100)
    seen = []
    cache = Cache(root, on_warning=lambda m, node: seen.append(m))
    import hashlib
    assert cache.hash_file(data) == hashlib.sha256(b"hello").hexdigest()
    assert len(seen) == 1 and str(db) in seen[0] and "recreating" in seen[0]
    assert cache.hash_file(data) == hashlib.sha256(b"hello").hexdigest()  # memo works again
    assert len(seen) == 1 and db.exists()
    cache.clear()
    assert not db.exists()


def test_cache_verify_lists_and_repairs_damaged_entries(tmp_path, registry, capsys):
    root = tmp_path / "cache"
    _run(registry, Cache(root), tmp_path / "r1")
    assert main(["cache", "verify", "--cache", str(root)]) == 0
    (entry,) = _entries(root, "add", frame="a")
    _flip_last_byte_of_data(entry / "frames.fits")
    (root / "fingerprints.sqlite").write_bytes(b"garbage" * 50)
    capsys.readouterr()
    assert main(["cache", "verify", "--cache", str(root)]) == 1
    out = capsys.readouterr().out
    assert entry.name in out and "frames.fits" in out and "fingerprints.sqlite" in out
    assert main(["cache", "verify", "--repair", "--cache", str(root)]) == 0
    assert not entry.exists() and not (root / "fingerprints.sqlite").exists()
    assert main(["cache", "verify", "--cache", str(root)]) == 0


# --- paths from a manifest ---------------------------------------------------------------------
def _resign(manifest_path: Path, change):
    """Tamper a manifest the way an attacker could: change it and recompute its checksum."""
    man = json.loads(manifest_path.read_text())
    man.pop("manifest_sha256")
    change(man)
    man["manifest_sha256"] = sha256_json(man)
    manifest_path.write_text(json.dumps(man))


@pytest.mark.parametrize("bad", ["../../x", "artifacts/../../../x", "/tmp/starloom-x",
                                 "C:/x", "..\\..\\x"])
def test_restored_paths_stay_inside_the_run_directory(tmp_path, registry, bad):
    root = tmp_path / "cache"
    _run(registry, Cache(root), tmp_path / "runs" / "r1")
    (entry,) = _entries(root, "add", frame="a")

    def change(man):
        man["files"] = [bad]
        man["checksums"][f"files/{bad}"] = {"size": 1, "sha256": "0" * 64}

    _resign(entry / "manifest.json", change)
    res, events = _run(registry, Cache(root), tmp_path / "runs" / "r2")
    assert res.frames_computed == 1  # the tampered entry was a miss
    assert any(entry.name[:12] in m for m in _warnings(events))
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs" / "x").exists()
    assert not Path("/tmp/starloom-x").exists()
    # Entry.restore_files refuses such a path even when handed a manifest directly.
    forged = Entry("ab" * 32, entry, {"files": [bad], "ports": {}}, root)
    with pytest.raises(CacheError, match="outside the run directory"):
        forged.restore_files(tmp_path / "runs" / "r3")


def test_a_copied_cache_keeps_working(tmp_path, registry):
    root = tmp_path / "cache"
    first, _ = _run(registry, Cache(root), tmp_path / "r1")
    expected = first.outputs["stack"]["image"].data.copy()
    moved = tmp_path / "elsewhere" / "cache2"
    shutil.copytree(root, moved)
    shutil.rmtree(root)
    for m in moved.rglob("*.json"):
        assert str(root) not in m.read_text(), m  # no absolute path into the old store
    res, events = _run(registry, Cache(moved), tmp_path / "r2")
    assert res.executed == [] and res.frames_computed == 0 and not _warnings(events)
    assert np.array_equal(res.outputs["stack"]["image"].data, expected)
    assert (tmp_path / "r2" / "artifacts" / "add" / "b.txt").read_text() == "b"
    assert not root.exists()


# --- orphans, sizes, ages ----------------------------------------------------------------------
def test_orphans_are_counted_and_removed(tmp_path, registry, capsys):
    import os
    root = tmp_path / "cache"
    _run(registry, Cache(root), tmp_path / "r1")
    key = "cd" * 32
    old = root / "objects" / "cd" / f".{key}.abc123"
    new = root / "objects" / "cd" / f".{key}.def456"
    for d in (old, new):
        d.mkdir(parents=True)
        (d / "part.fits").write_bytes(b"0" * 100)
    past = time.time() - 7200
    os.utime(old, (past, past))
    info = Cache(root).info()
    assert info["orphans"] == 2 and info["orphan_bytes"] == 200
    assert main(["cache", "info", "--cache", str(root)]) == 0
    assert "2 orphan(s)" in capsys.readouterr().out
    res = Cache(root).gc()
    assert res["orphans"] == 1 and not old.exists() and new.exists()  # a recent one may be live
    Cache(root).clear()
    assert not new.exists() and Cache(root).info()["orphans"] == 0


def test_gc_by_age_and_size(tmp_path, registry):
    import os
    root = tmp_path / "cache"
    user = Cache(root)
    _run(registry, user, tmp_path / "r1")
    user.close()  # else its marks keep every entry it used (test below)
    n = Cache(root).info()["entries"]
    (stack,) = _entries(root, "stack")
    past = time.time() - 40 * 86400
    os.utime(stack, (past, past))
    res = Cache(root).gc(older_than=parse_age("30d"))
    assert res["removed"] == 1 and not stack.exists()
    assert Cache(root).info()["entries"] == n - 1
    res = Cache(root).gc(max_bytes=0)
    assert res["removed"] == n - 1 and Cache(root).info()["entries"] == 0


def test_gc_keeps_entries_this_process_uses(tmp_path, registry):
    root = tmp_path / "cache"
    user = Cache(root)
    _run(registry, user, tmp_path / "r1")  # ``user`` marks every entry it stored or looked up
    n = Cache(root).info()["entries"]
    res = Cache(root).gc(max_bytes=0)
    assert res["removed"] == 0 and res["kept_in_use"] == n
    user.close()  # the marks go with it
    res = Cache(root).gc(max_bytes=0)
    assert res["removed"] == n


def test_sizes_and_ages_parse():
    assert parse_size("500MB") == 500_000_000 and parse_size("20GB") == 20_000_000_000
    assert parse_size("2GiB") == 2 * 1024 ** 3 and parse_size("4096") == 4096
    assert parse_age("12h") == 12 * 3600 and parse_age("30d") == 30 * 86400
    for bad in ("", "lots", "20XB", "-1GB"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)
    with pytest.raises(ValueError, match="age"):
        parse_age("soon")


def test_cache_gc_command_refuses_a_bad_size(tmp_path, capsys):
    assert main(["cache", "gc", "--max-size", "big", "--cache", str(tmp_path / "c")]) == 2
    assert "500MB" in capsys.readouterr().err


# --- write-time cards --------------------------------------------------------------------------
def test_two_fresh_caches_give_the_same_keys_downstream_of_a_master_dark(tmp_path):
    registry = Registry()
    register_all(registry)
    graph = _doc([("sim", "simulate.session", {"width": 64, "height": 64, "n_bias": 2,
                                               "n_darks": 2, "n_flats": 1, "n_lights": 2}),
                  ("bias", "calibration.master_bias", {}),
                  ("dark", "calibration.master_dark", {}),
                  ("calibrate", "calibration.calibrate_lights", {}),
                  ("stack", "stacking.combine", {"rejection": "none"})],
                 [("sim.bias", "bias.frames"), ("sim.darks", "dark.frames"),
                  ("bias.master_bias", "dark.bias"), ("sim.lights", "calibrate.lights"),
                  ("bias.master_bias", "calibrate.bias"), ("dark.darks", "calibrate.darks"),
                  ("calibrate.lights", "stack.frames")])
    keys = []
    for name in ("a", "b"):
        _, events = _run(registry, Cache(tmp_path / f"cache-{name}"), tmp_path / name, graph)
        keys.append({e["node"]: e["key"] for e in events if e["event"] == Event.NODE_STARTED})
        time.sleep(1.1)  # DATE, written with each FITS file, has one-second resolution
    assert set(keys[0]) == {"sim", "bias", "dark", "calibrate", "stack"}
    assert keys[0] == keys[1]


def test_run_with_a_garbage_fingerprint_database_warns_and_succeeds(tmp_path):
    from starloom.astro import fits as fitsio
    registry = Registry()
    register_all(registry)
    lights = tmp_path / "lights"
    lights.mkdir()
    for i in range(3):
        fitsio.write_frame(CCDData(np.full((8, 8), i, np.float32), unit="adu",
                                   meta={"IMAGETYP": "Light Frame", "EXPTIME": 1.0}),
                           lights / f"l{i}.fits")
    root = tmp_path / "cache"
    root.mkdir()
    (root / "fingerprints.sqlite").write_bytes(b"\x00garbage" * 300)
    graph = _doc([("load", "io.load_frames", {"path": str(lights)}),
                  ("stack", "stacking.combine", {"method": "average", "rejection": "none",
                                                 "normalization": "none", "weights": "none"})],
                 [("load.frames", "stack.frames")])
    res, events = _run(registry, Cache(root), tmp_path / "r1", graph)
    (msg,) = _warnings(events)
    assert "fingerprints.sqlite" in msg and "recreating" in msg
    assert np.allclose(res.outputs["stack"]["image"].data, 1.0)
    again, events = _run(registry, Cache(root), tmp_path / "r2", graph)
    assert not _warnings(events) and again.executed == []


def test_a_cache_folder_that_cannot_be_made_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CacheError, match="--cache DIR"):
        Cache(blocker / "cache")
    assert main(["cache", "info", "--cache", str(blocker / "cache")]) == 2
    assert "cannot create" in capsys.readouterr().err


def test_gc_removes_entries_whose_frames_it_removed(tmp_path, registry):
    import os
    root = tmp_path / "cache"
    user = Cache(root)
    _run(registry, user, tmp_path / "r1")
    user.close()
    (frame_b,) = _entries(root, "add", frame="b")
    (node_add,) = _entries(root, "add")
    past = time.time() - 40 * 86400
    os.utime(frame_b, (past, past))
    res = Cache(root).gc(older_than=parse_age("30d"))
    assert res["removed"] == 2 and not frame_b.exists() and not node_add.exists()
    again, events = _run(registry, Cache(root), tmp_path / "r2")
    assert not _warnings(events)  # a plain miss, not damage
    assert again.frames_computed == 1 and again.frames_cached == 2


def test_an_entry_altered_after_this_process_checked_it_is_checked_again(tmp_path, registry):
    import os
    root = tmp_path / "cache"
    _run(registry, Cache(root), tmp_path / "r1")
    _run(registry, Cache(root), tmp_path / "r2")  # hashes every entry once in this process
    (entry,) = _entries(root, "stack")
    st = os.stat(entry / "image.fits")
    _flip_last_byte_of_data(entry / "image.fits")
    res, events = _run(registry, Cache(root), tmp_path / "r3")
    assert res.executed == ["stack"] and len(_warnings(events)) == 1
    # Altered with its modification time kept: only a full check sees it.
    (entry,) = _entries(root, "stack")
    st = os.stat(entry / "image.fits")
    _flip_last_byte_of_data(entry / "image.fits")
    os.utime(entry / "image.fits", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert [k for k, _ in Cache(root).verify()] == [entry.name]


def test_a_new_process_reads_no_unchanged_entry_again_and_gc_forgets_removed_files(
        tmp_path, registry, monkeypatch):
    import os
    import sqlite3
    from contextlib import closing

    from starloom.graph_runtime import cache_integrity
    root = tmp_path / "cache"
    def run(name):
        cache = Cache(root)
        try:
            return _run(registry, cache, tmp_path / name)
        finally:
            cache.close()  # its marks of entries in use go, as when a process ends

    run("r1")  # storing an entry memoizes the hashes of its files
    cache_mod._VERIFIED.clear()  # as in a new process
    reads = []
    real = cache_integrity.file_sha256
    counting = lambda p: reads.append(p) or real(p)  # noqa: E731
    monkeypatch.setattr(cache_integrity, "file_sha256", counting)
    monkeypatch.setattr(cache_mod, "file_sha256", counting)  # the memo's own reads
    res, events = run("r3")
    assert res.cached == ["src", "add", "stack"] and reads == [] and not _warnings(events)
    # an entry written again (new modification time) is hashed again, and its damage found
    (entry,) = _entries(root, "stack")
    cache_mod._VERIFIED.clear()
    _flip_last_byte_of_data(entry / "image.fits")
    res, events = run("r4")
    assert res.executed == ["stack"] and len(_warnings(events)) == 1
    # gc drops the memoized hashes of the files it removed, and only those
    (entry,) = _entries(root, "stack")

    def memoized():
        with closing(sqlite3.connect(root / "fingerprints.sqlite")) as db:
            return [p for (p,) in db.execute("SELECT path FROM fp")]

    assert any(p.startswith(str(entry)) for p in memoized())
    gone = Cache(root).gc(max_bytes=0)
    assert gone["removed"] >= 1, gone
    paths = memoized()
    assert all(os.path.exists(p) for p in paths)
    assert not any(p.startswith(str(entry)) for p in paths)
