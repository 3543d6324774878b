"""Graph files keep their bytes and their layout through the editing model (issue 12): an
unedited save is byte-identical, an edited one keeps the file's layout and permission bits."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from starloom.graph_runtime.editing import EditableGraph
from starloom.graph_runtime.registry import default_registry
from starloom.serialization import load_graph
from starloom.serialization.text_style import CANONICAL, format_graph, text_style

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "example_graphs").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_unedited_save_is_byte_identical(tmp_path, path):
    g = EditableGraph(default_registry())
    g.load(path)
    out = g.save(tmp_path / path.name)
    assert out.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_layout_of_each_example_is_reproduced(path):
    text = path.read_text()
    style = text_style(text)
    assert style.inline_depth == 2 and style.int_positions
    assert format_graph(load_graph(path), style) == text


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_an_edit_changes_only_its_lines(tmp_path, path):
    g = EditableGraph(default_registry())
    g.load(path)
    nid = g.node_ids()[0]
    g.move_node(nid, 44, 1234)
    out = g.save(tmp_path / path.name)
    old, new = path.read_text().splitlines(), out.read_text().splitlines()
    assert len(old) == len(new)  # one line per node, as the file has it
    changed = [(a, b) for a, b in zip(old, new) if a != b]
    # The moved node's line, and the versions the graph was written with.
    assert len(changed) <= 2, changed
    assert any(f'"id": "{nid}"' in b and '"x": 44, "y": 1234' in b for _, b in changed)
    assert "null" not in out.read_text() and '"x": 44.0' not in out.read_text()
    assert load_graph(out).node(nid).ui.y == 1234


def test_a_canonical_file_stays_canonical(tmp_path):
    doc = load_graph(EXAMPLES[0])
    path = tmp_path / "canonical.json"
    path.write_text(doc.to_json())
    assert text_style(path.read_text()) == CANONICAL
    g = EditableGraph(default_registry())
    g.load(path)
    g.move_node(g.node_ids()[0], 10, 10)
    g.save(path)
    assert path.read_text() == g.doc.to_json()


def test_save_keeps_the_file_mode_and_a_new_file_gets_the_umask(tmp_path):
    g = EditableGraph(default_registry())
    g.load(EXAMPLES[0])
    path = tmp_path / "g.json"
    old = os.umask(0o022)
    try:
        g.save(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o640)
        g.move_node(g.node_ids()[0], 1, 2)
        g.save(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_undo_back_to_the_saved_state_clears_modified(tmp_path):
    g = EditableGraph(default_registry())
    g.load(EXAMPLES[0])
    nid = g.node_ids()[0]
    g.move_node(nid, 5, 5)
    assert g.modified
    g.undo()
    assert not g.modified
    g.move_node(nid, 5, 5)
    g.save(tmp_path / "g.json")
    g.move_node(nid, 6, 6)
    g.undo()
    assert not g.modified
