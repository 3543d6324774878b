"""A stand-in for the runtime's NodeContext, for tests that call a node's run() directly: it
records diagnostics, warnings and history notes, and puts artifacts and outputs in a folder."""
from __future__ import annotations

import tempfile
from pathlib import Path


class FakeContext:
    band_map, band_tasks = None, 1  # whole-image work on the node's own threads

    def __init__(self, folder=None, *, frame=None, node_id="node"):
        self.folder = Path(folder) if folder is not None else None
        self.frame, self.node_id = frame, node_id
        self.diagnostics, self.warnings, self.notes = {}, [], []

    def warn(self, message):
        self.warnings.append(message)

    def history(self, note, image=None):
        self.notes.append(note)

    def progress(self, done, total):
        pass

    def artifact_path(self, name):
        if self.folder is None:  # a test that does not look at the files
            self.folder = Path(tempfile.mkdtemp(prefix="starloom-ctx-"))
        return self.folder / name

    output_path = artifact_path
