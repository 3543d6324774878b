"""The registry: built-in nodes and third-party packages found by entry point."""
from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from starloom.astro.errors import StarloomError
from starloom.graph_runtime import registry as registry_mod
from starloom.graph_runtime.node import Node, Params, Port


class PluginNode(Node):
    type_id = "plugin.answer"
    title = "Answer"
    category = "plugin"

    class Params(Params):
        pass

    outputs = {"value": Port("Number")}

    def run(self, ctx, params):
        return {"value": 42.0}


def register_plugin(reg):
    reg.add(PluginNode)


def broken_plugin(reg):
    raise ImportError("missing dependency 'foo'")


def test_entry_point_plugins_are_discovered_and_broken_ones_reported(monkeypatch):
    eps = [EntryPoint("builtin", "starloom.nodes:register_all", "starloom.nodes"),
           EntryPoint("answer", f"{__name__}:register_plugin", "starloom.nodes"),
           EntryPoint("broken", f"{__name__}:broken_plugin", "starloom.nodes")]
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: eps)
    monkeypatch.setattr(registry_mod, "_default", None)
    reg = registry_mod.default_registry()
    assert "plugin.answer" in reg and "stacking.combine" in reg
    assert "broken" in reg.load_errors and "foo" in reg.load_errors["broken"]
    monkeypatch.setattr(registry_mod, "_default", None)


def test_duplicate_type_id_is_refused():
    reg = registry_mod.Registry()
    reg.add(PluginNode)
    clone = type("Clone", (PluginNode,), {})
    with pytest.raises(StarloomError, match="registered twice"):
        reg.add(clone)


def test_every_builtin_node_declares_the_contract():
    reg = registry_mod.default_registry()
    assert len(reg) >= 11
    for cls in reg:
        assert cls.type_id.startswith(cls.category + "."), cls
        assert cls.title and cls.version >= 1
        cls.Params()  # every parameter has a default, so a node placed fresh is valid
        if cls.per_frame:
            assert cls.inputs[cls.per_frame].types == ("FrameSeries",)


def test_runtime_and_nodes_import_without_qt():
    import subprocess
    import sys
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, *a):\n"
            "        if name.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'qtpy', 'ryvencore_qt'):\n"
            "            raise ImportError('Qt is blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from starloom.graph_runtime.registry import default_registry\n"
            "from starloom.cli import main as cli\n"
            "print(len(default_registry()))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) >= 17
