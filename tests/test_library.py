"""Calibration library: store, index, select, remove; matching rules; concurrent writers; CLI;
the two example graphs on the real ASI120 frames."""
from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from conftest import shared
from starloom.astro.errors import StarloomError
from starloom.astro.frames import FrameSeries
from starloom.astro.library import Library, content_key, default_library_dir
from starloom.astro.library_match import Tolerances, light_settings, select_masters
from starloom.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "example_graphs"
CAMERA = {"INSTRUME": "TestCam", "XBINNING": 1, "YBINNING": 1, "GAIN": 120, "OFFSET": 30}


def _master(kind, value=0.0, shape=(20, 24), **cards) -> CCDData:
    header = fits.Header({**CAMERA, "IMAGETYP": f"Master {kind}", "CCD-TEMP": -10.0,
                          "SET-TEMP": -10.0, "DATE-OBS": "2025-01-10T20:00:00", "NCOMBINE": 20})
    if kind == "dark":
        header["EXPTIME"] = 300.0
        header["SUBBIAS"] = "ccd=<CCDData>, master=<CCDData>"
    if kind == "flat":
        header["FILTER"] = "Ha"
    for k, v in cards.items():
        key = k.replace("_", "-")
        if v is None:
            header.remove(key, ignore_missing=True)
        else:
            header[key] = v
    data = np.random.default_rng(abs(hash((kind, value))) % 2**32).normal(100 + value, 1, shape)
    return CCDData(data.astype(np.float32), unit="adu", meta=header)


def _lights(n=3, shape=(20, 24), **cards) -> FrameSeries:
    frames = []
    for i in range(n):
        h = fits.Header({**CAMERA, "IMAGETYP": "Light Frame", "EXPTIME": 300.0,
                         "CCD-TEMP": -10.2, "SET-TEMP": -10.0, "FILTER": "Ha",
                         "DATE-OBS": f"2025-01-12T2{i}:00:00"})
        for k, v in cards.items():
            h[k.replace("_", "-")] = v
        frames.append(CCDData(np.zeros(shape, np.float32), unit="adu", meta=h))
    return FrameSeries.from_frames(frames, [f"light{i}" for i in range(n)])


def _select(lib, lights, **kw):
    settings = light_settings([r.meta for r in lights.refs], lights.shape)
    return select_masters(lib.masters(), settings, Tolerances(), **kw)


def test_round_trip_save_index_select_remove(tmp_path):
    lib = Library(tmp_path / "lib")
    bias, dark, flat = _master("bias"), _master("dark", 5), _master("flat", 9)
    stored = [lib.add(m, kind)[0] for m, kind in ((bias, "bias"), (dark, "dark"),
                                                   (flat, "flat"))]
    again, added = lib.add(dark, "dark")
    assert not added and again.id == stored[1].id  # same data: stored once
    rows = json.loads((tmp_path / "lib" / "catalogue.json").read_text())["masters"]
    assert [r["type"] for r in rows] == ["bias", "dark", "flat"]
    d = lib.get(stored[1].id[:6])
    assert (d.instrument, d.gain, d.offset, d.exptime, d.set_temp, d.n_frames) == \
        ("TestCam", 120.0, 30.0, 300.0, -10.0, 20)
    assert d.bias_subtracted and d.key == content_key(dark.data)
    np.testing.assert_array_equal(lib.read(d).data, dark.data)

    sel = _select(lib, _lights())
    assert sel.bias.master.id == stored[0].id
    assert [c.master.id for c in sel.darks] == [stored[1].id] and not sel.darks[0].scaled
    assert [c.master.id for c in sel.flats] == [stored[2].id]
    assert "exposure 300 s matches" in sel.darks[0].reason

    lib.remove(stored[1].id)
    assert not (tmp_path / "lib" / stored[1].file).exists()
    assert [m.id for m in lib.masters()] == [stored[0].id, stored[2].id]
    with pytest.raises(StarloomError, match="no master dark"):
        _select(lib, _lights())


def test_default_folder_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("STARLOOM_LIBRARY", str(tmp_path / "env-lib"))
    assert default_library_dir() == tmp_path / "env-lib"
    assert Library().root == tmp_path / "env-lib"


def test_nearest_temperature_and_date_win(tmp_path):
    lib = Library(tmp_path)
    lib.add(_master("bias", 1, CCD_TEMP=-8.5, SET_TEMP=None), "bias")
    near = lib.add(_master("bias", 2, CCD_TEMP=-10.1, SET_TEMP=None), "bias")[0]
    lib.add(_master("bias", 3, CCD_TEMP=-10.1, SET_TEMP=None, DATE_OBS="2024-06-01T00:00:00"),
            "bias")
    sel = _select(lib, _lights(), darks=False, flats=False)
    assert sel.bias.master.id == near.id
    assert "CCD-TEMP within 0.1 C" in sel.bias.reason and "best of 3" in sel.bias.reason


def test_scaled_dark_when_no_exposure_matches(tmp_path):
    lib = Library(tmp_path)
    lib.add(_master("bias"), "bias")
    lib.add(_master("dark", 1, EXPTIME=60.0), "dark")
    d600 = lib.add(_master("dark", 2, EXPTIME=600.0), "dark")[0]
    lib.add(_master("dark", 3, EXPTIME=10.0), "dark")
    sel = _select(lib, _lights(EXPTIME=450.0), flats=False)
    (choice,) = sel.darks
    assert choice.master.id == d600.id and choice.scaled
    assert "scaled by 0.75" in choice.reason
    # Without a master bias nothing can be scaled: a clear failure naming each dark.
    with pytest.raises(StarloomError) as err:
        _select(lib, _lights(EXPTIME=450.0), bias=False, flats=False)
    assert "bias-subtracted: needs a master bias" in str(err.value)


def test_near_misses_listed_one_line_per_candidate(tmp_path):
    lib = Library(tmp_path)
    ids = [lib.add(_master("dark", 1, GAIN=0), "dark")[0].id,
           lib.add(_master("dark", 2, CCD_TEMP=5.0, SET_TEMP=5.0), "dark")[0].id,
           lib.add(_master("dark", 3, XBINNING=2, YBINNING=2), "dark")[0].id,
           lib.add(_master("dark", 4, shape=(10, 12)), "dark")[0].id]
    lib.add(_master("bias"), "bias")
    with pytest.raises(StarloomError) as err:
        _select(lib, _lights(), flats=False)
    lines = str(err.value).splitlines()
    assert lines[0].startswith("no master dark in the library fits the 300 s lights")
    assert "4 candidate(s)" in lines[0]
    by_id = {line.split()[0]: line for line in lines[1:]}
    assert set(by_id) == set(ids)
    assert "GAIN 0.0 != 120.0" in by_id[ids[0]]
    assert "SET-TEMP differs by 15.0 C > 2 C" in by_id[ids[1]]
    assert "XBINNING 2 != 1" in by_id[ids[2]] and "YBINNING 2 != 1" in by_id[ids[2]]
    assert "NAXIS1 12 != 24" in by_id[ids[3]]


def test_flat_must_match_filter_and_be_recent(tmp_path):
    lib = Library(tmp_path)
    lib.add(_master("flat", 1, FILTER="OIII"), "flat")
    old = lib.add(_master("flat", 2, DATE_OBS="2024-10-01T00:00:00"), "flat")[0]
    with pytest.raises(StarloomError) as err:
        _select(lib, _lights(), bias=False, darks=False)
    text = str(err.value)
    assert "FILTER 'OIII' != 'Ha'" in text and f"{old.id}" in text and "days apart > 30" in text
    sel = select_masters(lib.masters(), light_settings([r.meta for r in _lights().refs],
                                                       (20, 24)),
                         Tolerances(days_flat=200), bias=False, darks=False)
    assert sel.flats[0].master.id == old.id


def test_lights_with_mixed_settings_refused():
    lights = FrameSeries(list(_lights(2).refs) + list(_lights(1, GAIN=0).refs))
    with pytest.raises(StarloomError, match="mix several GAIN"):
        light_settings([r.meta for r in lights.refs], lights.shape)


def _add_many(root, start, n):
    lib = Library(root)
    for i in range(start, start + n):
        lib.add(_master("dark", 1000 + i, shape=(6, 8), EXPTIME=float(i + 1)), "dark")


def test_concurrent_writers_lose_no_rows(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_many, args=(tmp_path, k * 6, 6)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    masters = Library(tmp_path).masters()
    assert sorted(m.exptime for m in masters) == [float(i + 1) for i in range(24)]
    assert all((tmp_path / m.file).exists() for m in masters)


def test_cli_list_show_remove(tmp_path, capsys):
    lib = Library(tmp_path / "lib")
    b = lib.add(_master("bias"), "bias")[0]
    d = lib.add(_master("dark", 1), "dark")[0]
    assert main(["library", "list", "--library", str(lib.root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["ID", "TYPE", "EXPTIME"]
    assert any(line.startswith(d.id) and " dark " in line and " 300 " in line for line in out)
    assert out[-1] == f"2 master(s) in {lib.root}"
    assert main(["library", "show", b.id[:5], "--library", str(lib.root)]) == 0
    shown = capsys.readouterr().out
    assert "instrument       TestCam" in shown and str(lib.path(b)) in shown
    assert main(["library", "remove", d.id, "--library", str(lib.root)]) == 0
    assert not lib.path(d).exists() and [m.id for m in lib.masters()] == [b.id]
    assert main(["library", "show", "ffffff", "--library", str(lib.root)]) == 2
    assert "no master with id 'ffffff'" in capsys.readouterr().err


def test_example_graphs_store_then_calibrate_from_library(tmp_path, capsys):
    data = shared("asi120mc")
    lib, common = tmp_path / "lib", ["--runs", str(tmp_path / "runs"),
                                     "--cache", str(tmp_path / "cache")]
    code = main(["run", str(EXAMPLES / "calibration_library.json"), *common,
                 "--param", f"bias={data / 'bias'}", "--param", f"darks={data}/dark_*",
                 "--param", f"flats={data / 'flat'}", "--param", f"library={lib}",
                 "--set", "flat_model.validate_split=false", "--run-dir",
                 str(tmp_path / "runs" / "build")])
    assert code == 0, capsys.readouterr().err
    masters = Library(lib).masters()
    assert sorted((m.type, m.exptime) for m in masters if m.type != "flat") == \
        [("bias", 6.4e-05), ("dark", 10.0), ("dark", 100.0)]
    assert all(m.instrument == "ZWO ASI120MC-S" and m.gain == 0 and m.offset == 9
               and m.bayerpat == "GRBG" for m in masters)
    code = main(["run", str(EXAMPLES / "calibrate_from_library.json"), *common,
                 "--param", f"library={lib}", "--param", "exposure=10",
                 "--set", "simulate.n_lights=2", "--run-dir", str(tmp_path / "runs" / "cal")])
    assert code == 0, capsys.readouterr().err
    chosen = json.loads((tmp_path / "runs" / "cal" / "artifacts" / "select.json").read_text())
    kinds = {c["type"]: c for c in chosen["chosen"]}
    assert set(kinds) == {"bias", "dark", "flat"}
    assert kinds["dark"]["target"] == "10 s" and not kinds["dark"]["scaled"]
    outputs = sorted((tmp_path / "runs" / "cal" / "outputs").glob("*.fits"))
    assert len(outputs) == 2
    assert "calibrated: bias, dark 10s, flat" in str(fits.getheader(outputs[0])["HISTORY"])


def _graph(nodes, edges) -> dict:
    return {"format": "starloom.graph", "schema_version": 1,
            "metadata": {"name": "t", "description": "t", "created_with": {"starloom": "0.1.0"}},
            "parameters": {}, "nodes": nodes, "edges": edges}


def test_nodes_save_then_select_and_reselect_after_remove(tmp_path, capsys):
    lib = tmp_path / "lib"
    sim = {"id": "sim", "type": "simulate.session", "version": 1,
           "params": {"width": 96, "height": 80, "n_bias": 4, "n_darks": 4, "n_flats": 4,
                      "n_lights": 2, "light_exposure": 30}}
    build = _graph([sim,
                    {"id": "mb", "type": "calibration.master_bias", "version": 1, "params": {}},
                    {"id": "md", "type": "calibration.master_dark", "version": 1, "params": {}},
                    {"id": "mf", "type": "calibration.master_flat", "version": 2, "params": {}},
                    {"id": "save", "type": "library.save_masters", "version": 1,
                     "params": {"library": str(lib)}}],
                   [{"from": "sim.bias", "to": "mb.frames"},
                    {"from": "sim.darks", "to": "md.frames"},
                    {"from": "mb.master_bias", "to": "md.bias"},
                    {"from": "sim.flats", "to": "mf.frames"},
                    {"from": "mb.master_bias", "to": "save.bias"},
                    {"from": "md.darks", "to": "save.darks"},
                    {"from": "mf.flats", "to": "save.flats"}])
    use = _graph([{**sim, "params": {**sim["params"], "light_exposure": 45}},
                  {"id": "select", "type": "library.select_masters", "version": 1,
                   "params": {"library": str(lib), "max_days_flat": 1}},
                  {"id": "cal", "type": "calibration.calibrate_lights", "version": 1,
                   "params": {}}],
                 [{"from": "sim.lights", "to": "select.lights"},
                  {"from": "sim.lights", "to": "cal.lights"},
                  {"from": "select.bias", "to": "cal.bias"},
                  {"from": "select.darks", "to": "cal.darks"},
                  {"from": "select.flats", "to": "cal.flats"}])
    for name, doc in (("build", build), ("use", use)):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    cache = ["--cache", str(tmp_path / "cache")]
    assert main(["run", str(tmp_path / "build.json"), "--run-dir", str(tmp_path / "r1"),
                 *cache]) == 0, capsys.readouterr().err
    assert sorted(m.type for m in Library(lib).masters()) == ["bias", "dark", "flat"]
    assert main(["run", str(tmp_path / "use.json"), "--run-dir", str(tmp_path / "r2"),
                 *cache]) == 0, capsys.readouterr().err
    chosen = json.loads((tmp_path / "r2" / "artifacts" / "select.json").read_text())["chosen"]
    dark = next(c for c in chosen if c["type"] == "dark")
    assert dark["scaled"] and "scaled by 1.5" in dark["reason"]
    # The library is part of the selection's key: a removed master is not served from cache.
    flat = next(m for m in Library(lib).masters() if m.type == "flat")
    assert main(["library", "remove", flat.id, "--library", str(lib)]) == 0
    capsys.readouterr()
    assert main(["run", str(tmp_path / "use.json"), "--run-dir", str(tmp_path / "r3"),
                 *cache]) == 1
    err = capsys.readouterr().err
    assert "select" in err and "the library has no master flat" in err


def test_simulated_frames_take_header_cards():
    from starloom.nodes.simulate import SimulateSession

    params = SimulateSession.Params(width=64, height=64, n_bias=1, n_darks=1, n_flats=1,
                                    n_lights=2, header={"INSTRUME": "ZWO ASI120MC-S", "GAIN": 0,
                                                        "FILTER": ""})
    out = SimulateSession().run(None, params)
    meta = out["lights"].refs[1].meta
    assert (meta["INSTRUME"], meta["GAIN"], meta["FILTER"]) == ("ZWO ASI120MC-S", 0.0, None)
    assert out["bias"].refs[0].meta["INSTRUME"] == "ZWO ASI120MC-S"


def test_flat_model_image_with_mask_and_uncertainty_round_trips(tmp_path):
    from astropy.nddata import StdDevUncertainty

    flat = _master("flat", 3)
    flat.data /= np.mean(flat.data)
    flat.mask = np.zeros(flat.shape, bool)
    flat.mask[2, 3] = True
    flat.uncertainty = StdDevUncertainty(np.full(flat.shape, 0.01, np.float32))
    lib = Library(tmp_path)
    m, added = lib.add(flat, "flat")
    back = lib.read(m)
    assert added and back.mask[2, 3] and back.mask.sum() == 1
    np.testing.assert_allclose(back.uncertainty.array, 0.01)
    np.testing.assert_array_equal(back.data, flat.data)
