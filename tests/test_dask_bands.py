"""The stack's band reduction as chunked Dask tasks: on a LocalCluster of two worker processes
(loopback), row ranges are combined on the workers, each reading its rows from the frames'
files, and the assembled result has the bits of the local run for every rejection method."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from starloom.astro import fits as fitsio
from starloom.astro.collection import collect_frames
from starloom.astro.combiner import REJECTIONS
from starloom.astro.simulate import simulate_session
from starloom.graph_runtime.cache import Cache
from starloom.graph_runtime.executor import LocalExecutor
from starloom.graph_runtime.executor_dask import DaskExecutor
from starloom.graph_runtime.graph import plan
from starloom.graph_runtime.registry import default_registry
from starloom.graph_runtime.run import Run
from starloom.serialization import GraphDocument

distributed = pytest.importorskip("distributed")

N_FRAMES, SHAPE = 8, (100, 120)


@pytest.fixture(scope="module")
def lights(tmp_path_factory) -> Path:
    """8 simulated uint16 light frames with a satellite trail in one and a hot blob in another
    (something for the rejection to reject)."""
    root = tmp_path_factory.mktemp("lights")
    frames = simulate_session(seed=11, shape=SHAPE, n_bias=0, n_darks=0, n_flats=0,
                              n_lights=N_FRAMES, n_stars=40, dither=0.0)["light"]
    frames[3].data[40:43, :] += 5000.0  # a trail
    frames[5].data[10:14, 20:24] += 20000.0
    for i, ccd in enumerate(frames):
        fitsio.write_frame(ccd, root / f"light_{i:03d}.fits", dtype="uint16")
    return root


def series_of(lights: Path):
    """The light frames as a FrameSeries of their files (as io.load_frames makes it)."""
    return collect_frames(sorted(str(p) for p in lights.glob("*.fits")), hash_file=str).series


def band_tasks(stream) -> list[dict]:
    return [t for t in stream.data if str(t["key"]).startswith("_combine_range")]


@pytest.mark.parametrize("normalize", [False, True])
def test_every_rejection_gives_the_local_bits_from_tasks_on_the_workers(lights, client,
                                                                        normalize):
    series = series_of(lights)
    assert all(r.path and r.data is None for r in series.refs)  # read from files
    shift = np.arange(N_FRAMES, dtype=np.float32) * 3.5
    kw = dict(weights=np.linspace(1.0, 2.0, N_FRAMES),
              transform=(lambda i, y0, y1, d: d - shift[i]) if normalize else None,
              band_bytes=N_FRAMES * SHAPE[1] * 4 * 9)
    # 9 rows of float32 per range; raw uint16 frames (no transform) fit 18 rows
    ranges = -(-SHAPE[0] // (9 if normalize else 18))
    executor = DaskExecutor(client=client)
    workers = set(client.scheduler_info()["workers"])
    for rejection in REJECTIONS:
        local_map = np.zeros((2,) + SHAPE, np.uint16)
        local = series.reduce("average", rejection=rejection, rejection_map=local_map, **kw)
        dask_map, done = np.zeros((2,) + SHAPE, np.uint16), []
        with distributed.get_task_stream(client) as stream:
            remote = series.reduce("average", rejection=rejection, rejection_map=dask_map,
                                   band_map=executor.band_map(),
                                   band_tasks=executor.band_slots(),
                                   progress=lambda d, t: done.append((d, t)), **kw)
        tasks = band_tasks(stream)
        assert len(tasks) == ranges and {t["worker"] for t in tasks} <= workers, rejection
        assert sorted(done)[-1] == (SHAPE[0], SHAPE[0]) and len(done) == ranges
        np.testing.assert_array_equal(remote.data, local.data, err_msg=rejection)
        np.testing.assert_array_equal(remote.uncertainty.array, local.uncertainty.array)
        assert (remote.mask is None) == (local.mask is None)
        np.testing.assert_array_equal(dask_map, local_map, err_msg=rejection)
        if rejection in ("sigma_clip", "winsorized", "minmax"):  # the trail was rejected
            assert local_map[1, 40:43].mean() > 0.5, rejection
    executor.close()  # a client given is not closed
    assert client.status == "running"


def stack_doc(lights: Path, rejection: str) -> GraphDocument:
    return GraphDocument.model_validate({
        "nodes": [{"id": "load", "type": "io.load_frames", "version": 1,
                   "params": {"path": str(lights)}},
                  {"id": "stack", "type": "stacking.combine", "version": 1,
                   "params": {"rejection": rejection}}],
        "edges": [{"from": "load.frames", "to": "stack.frames"}]})


@pytest.mark.parametrize("rejection", ["sigma_clip", "winsorized"])
def test_a_stack_run_on_dask_has_the_bits_of_the_local_run(lights, client, tmp_path,
                                                           rejection):
    """Normalization and noise weights (the defaults) are computed before the bands and
    travel with the band tasks."""
    reg = default_registry()
    local = Run(tmp_path / "r_local", Cache(tmp_path / "local"),
                executor=LocalExecutor()).execute(plan(stack_doc(lights, rejection), reg))
    assert local.status == "ok", local.error
    with distributed.get_task_stream(client) as stream:
        remote = Run(tmp_path / "r_dask", Cache(tmp_path / "dask"),
                     executor=DaskExecutor(client=client)).execute(
                         plan(stack_doc(lights, rejection), reg))
    assert remote.status == "ok", remote.error
    tasks = band_tasks(stream)
    # One range per worker thread (the whole stack fits one band of memory_limit).
    assert len(tasks) == 2
    assert {t["worker"] for t in tasks} <= set(client.scheduler_info()["workers"])
    a, b = local.outputs["stack"], remote.outputs["stack"]
    np.testing.assert_array_equal(b["image"].data, a["image"].data)
    np.testing.assert_array_equal(b["image"].uncertainty.array, a["image"].uncertainty.array)
    np.testing.assert_array_equal(b["rejection_map"].data, a["rejection_map"].data)
    assert a["rejection_map"].data.sum() > 0
    assert a["image"].header["NCOMBINE"] == b["image"].header["NCOMBINE"] == N_FRAMES


def test_a_failure_while_assembling_cancels_the_ranges_not_done(lights, client):
    series = series_of(lights)
    executor = DaskExecutor(client=client)

    class Cancelled(Exception):
        pass

    def stop(done, total):  # as ctx.progress does when the run is cancelled
        raise Cancelled("run cancelled")

    with pytest.raises(Cancelled):
        series.reduce("average", rejection="sigma_clip", band_map=executor.band_map(),
                      band_tasks=50, progress=stop)  # 50 ranges of 2 rows
    # Nothing is left on the cluster: the scheduler forgets the cancelled ranges.
    left = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
    for _ in range(100):
        if not left:
            break
        time.sleep(0.1)
        left = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
    assert left == 0


def kill_once(marker: str):
    """A transform that, the first time it reads rows 50+ of frame 4, kills its own worker
    process (SIGKILL: no exception, no clean-up) and leaves ``marker`` behind."""
    import os
    import signal

    def transform(i, y0, y1, data):
        if i == 4 and y0 >= 50 and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return data
    return transform


def test_a_range_whose_worker_is_killed_is_computed_again(lights, client, tmp_path):
    """Last in this module: it kills one of the cluster's workers (its nanny restarts it)."""
    series = series_of(lights)
    marker = tmp_path / "killed"
    kw = dict(rejection="winsorized", transform=kill_once(str(marker)))
    local = series.reduce("average", **kw | {"transform": None})
    executor = DaskExecutor(client=client)
    remote = series.reduce("average", band_map=executor.band_map(), band_tasks=4, **kw)
    assert marker.exists()  # a worker did die on a range ...
    assert int(marker.read_text()) not in client.run(os.getpid).values()  # ... and was replaced
    np.testing.assert_array_equal(remote.data, local.data)
    np.testing.assert_array_equal(remote.uncertainty.array, local.uncertainty.array)
