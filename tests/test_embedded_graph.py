"""Share a result, get its workflow (issue 12): every FITS and PNG a save node writes carries the
graph as run; `starloom run` and `starloom edit` take such an image like a graph file, and
refuse an embedded graph that does not validate."""
from __future__ import annotations

import json

import pytest

from starloom.astro import embed
from starloom.cli import main as cli
from starloom.graph_runtime.embedded import KEY, embedded_graph_text, load_any_graph
from starloom.serialization import GraphFileError

GRAPH = {
    "format": "starloom.graph", "schema_version": 1,
    "metadata": {"name": "tiny"},
    "parameters": {"seed": {"type": "integer", "default": 3, "binds": ["sim.seed"]}},
    "nodes": [
        {"id": "sim", "type": "simulate.session", "version": 1,
         "params": {"width": 64, "height": 64, "n_bias": 2, "n_darks": 1, "n_flats": 1,
                    "n_lights": 1}},
        {"id": "bias", "type": "calibration.master_bias", "version": 1},
        {"id": "fits", "type": "io.save_fits", "version": 1, "params": {"filename": "b.fits"}},
        {"id": "png", "type": "io.save_png", "version": 1, "params": {"filename": "b.png"}}],
    "edges": [{"from": "sim.bias", "to": "bias.frames"},
              {"from": "bias.master_bias", "to": "fits.image"},
              {"from": "bias.master_bias", "to": "png.image"}]}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("embedded")
    (tmp / "tiny.json").write_text(json.dumps(GRAPH))
    assert cli.main(["run", str(tmp / "tiny.json"), "--param", "seed=5", "--cache",
                     str(tmp / "cache"), "--run-dir", str(tmp / "run")]) == 0
    return tmp / "run" / "outputs"


@pytest.mark.parametrize("name", ["b.fits", "b.png"])
def test_saved_images_carry_the_graph_as_run(outputs, name):
    doc = load_any_graph(outputs / name)
    assert [n.id for n in doc.nodes] == ["sim", "bias", "fits", "png"]
    assert doc.parameters["seed"].default == 5  # with the parameters given to the run
    assert doc.metadata.created_with["starloom"]
    assert doc.node("sim").params["width"] == 64


def test_the_fits_image_is_still_read_as_before(outputs):
    from starloom.astro.fits import read_image_any
    assert read_image_any(outputs / "b.fits").shape == (64, 64)


def test_starloom_run_takes_an_image_as_its_graph(outputs, tmp_path):
    assert cli.main(["run", str(outputs / "b.fits"), "--cache", str(tmp_path / "cache"),
                     "--run-dir", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "outputs" / "b.png").is_file()


def test_an_embedded_graph_that_does_not_validate_is_refused(outputs, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes((outputs / "b.png").read_bytes())
    text = json.loads(embedded_graph_text(bad))
    text["edges"].append({"from": "nowhere", "to": "x.y"})
    embed.add_png_text(bad, KEY, json.dumps(text))
    with pytest.raises(GraphFileError, match="embedded graph"):
        load_any_graph(bad)
    assert cli.main(["run", str(bad), "--cache", str(tmp_path / "c")]) != 0
    plain = tmp_path / "plain.fits"
    from astropy.io import fits
    import numpy as np
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(plain)
    with pytest.raises(GraphFileError, match="carries no Starloom graph"):
        load_any_graph(plain)
