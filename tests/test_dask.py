"""Per-frame work as Dask tasks on a LocalCluster of worker processes (loopback): the same cache
entries, bit for bit, as the local executor, also when a worker is killed in the middle."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from starloom.cli.main import main
from starloom.graph_runtime.cache import Cache
from starloom.graph_runtime.executor import LocalExecutor, make_executor
from starloom.graph_runtime.executor_dask import DaskExecutor
from starloom.graph_runtime.graph import plan
from starloom.graph_runtime.node import Node, Params, Port
from starloom.graph_runtime.run import Run
from starloom.serialization import GraphDocument

from test_executor import n, registry, stack_graph, stored_fits, write_session

distributed = pytest.importorskip("distributed")


class KillOnce(Node):
    """Passes frames through; the first time it meets frame ``kill``, it kills its own worker
    process (SIGKILL: no exception, no clean-up), leaving ``marker`` behind."""

    type_id = "test.kill_once"
    title = "Kill once"
    category = "test"
    per_frame = "frames"

    class Params(Params):
        kill: str = ""
        marker: str = ""

    inputs = {"frames": Port("FrameSeries")}
    outputs = {"frames": Port("FrameSeries")}

    def run(self, ctx, params, frame):
        if ctx.frame == params.kill and not os.path.exists(params.marker):
            Path(params.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        ctx.history("passed through")
        return {"frames": frame}


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    return write_session(tmp_path_factory.mktemp("session"))


def test_dask_run_stores_the_bits_of_the_local_run(session, client, tmp_path):
    graph = tmp_path / "graph.json"
    graph.write_text(stack_graph(session).to_json())
    code = main(["run", str(graph), "--workers", "1", "--cache", str(tmp_path / "local"),
                 "--run-dir", str(tmp_path / "r_local")])
    assert code == 0
    code = main(["run", str(graph), "--scheduler", client.scheduler.address, "--cache",
                 str(tmp_path / "dask"), "--run-dir", str(tmp_path / "r_dask")])
    assert code == 0
    stored = stored_fits(tmp_path / "local")
    assert len([k for k in stored if k.endswith("/frames.fits")]) == 5
    assert stored == stored_fits(tmp_path / "dask")
    for node in ("calibrate", "register"):
        assert (json.loads((tmp_path / f"r_local/artifacts/{node}.json").read_text())
                == json.loads((tmp_path / f"r_dask/artifacts/{node}.json").read_text()))
    status = json.loads((tmp_path / "r_dask/status.json").read_text())
    assert status["frames_computed"] == 10
    # The frames ran on the workers: the cluster's workers each hold finished tasks' keys.
    logs = client.run(lambda: os.getpid())
    assert os.getpid() not in logs.values()


def test_a_killed_worker_is_replaced_and_the_result_is_the_same(session, client, tmp_path):
    reg = registry()
    reg.add(KillOnce)
    marker = tmp_path / "killed"

    def doc():
        return GraphDocument.model_validate({
            "nodes": [n("load", "io.load_frames", path=str(session / "lights")),
                      n("kill", "test.kill_once", kill="light_002", marker=str(marker))],
            "edges": [{"from": "load.frames", "to": "kill.frames"}]})

    workers_before = set(client.scheduler_info()["workers"])
    res = Run(tmp_path / "r_dask", Cache(tmp_path / "dask"),
              executor=DaskExecutor(client=client)).execute(plan(doc(), reg))
    assert res.status == "ok", res.error
    assert marker.exists()  # a worker did die on light_002 ...
    client.wait_for_workers(2, timeout=120)  # its nanny restarts it (slowly on a busy machine)
    killed_pid = int(marker.read_text())
    assert killed_pid not in client.run(lambda: os.getpid()).values()
    assert set(client.scheduler_info()["workers"]) != workers_before  # ... and was replaced
    # Every frame came back; one a worker finished before it died may be found in the cache
    # when Dask runs its task again (computed by then, it counts as cached).
    assert res.frames_computed + res.frames_cached == 5 and res.frames_computed >= 4
    local = Run(tmp_path / "r_local", Cache(tmp_path / "local"),
                executor=LocalExecutor()).execute(plan(doc(), reg))
    assert local.status == "ok", local.error
    stored = stored_fits(tmp_path / "dask")
    assert len([k for k in stored if k.endswith("/frames.fits")]) == 5
    assert stored == stored_fits(tmp_path / "local")


def test_executor_options():
    ex = make_executor("dask", workers=2)
    assert isinstance(ex, DaskExecutor) and ex.workers == 2 and ex.scheduler is None
    assert make_executor(scheduler="tcp://10.0.0.5:8786").scheduler == "tcp://10.0.0.5:8786"
    ex.close()  # never started: nothing to do
