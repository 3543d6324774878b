"""Startup: building the node registry imports none of the heavy science libraries.

`starloom nodes`, `starloom validate` and the editor's node list only need the node
declarations; photutils, reproject, astroalign, scikit-image, matplotlib, ccdproc and sep are
imported inside the functions of the nodes that use them (issue 13, "Startup"). A behaviour
test, run in a fresh interpreter; the timing is benchmarks/bench_startup.py's job.
"""
from __future__ import annotations

import json
import subprocess
import sys

# scipy is not listed: astropy.nddata imports scipy.sparse, and the cache module imports
# astropy.nddata when the command line starts (to be made lazy there).
HEAVY = ("photutils", "reproject", "astroalign", "skimage", "matplotlib", "ccdproc", "sep")

PROBE = """
import json, sys
from starloom.cli.main import main
code = main(["nodes"])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def test_starloom_nodes_imports_no_heavy_library():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] == 0
    assert "stacking.combine" in done.stdout
    loaded = {name.split(".")[0] for name in report["modules"]}
    assert sorted(loaded & set(HEAVY)) == []
