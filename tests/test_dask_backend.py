"""aggregate() on dask arrays: the NumPy results, lazily, however they are chunked.

Every field must equal NumPy's exactly, to the last bit: the NumPy core
computes each step from its own logits alone (its own shift, sums that never
span steps), so how a batch is chunked cannot change any step's result.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ensemble_agg import aggregate

try:
    import dask
    import dask.array as da
except ImportError:  # the optional extra is absent: only the last tests run
    dask = da = None

needs_dask = pytest.mark.skipif(da is None, reason="needs the dask extra")

RULES = ["sum", "product", "majority", "rank"]
INF = np.inf


def replay(n_steps=101, n_models=5, n_actions=4, dtype=np.float64, seed=0):
    """Logged logits with a few forbidden actions (never all of a model's)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=3.0, size=(n_steps, n_models, n_actions)).astype(dtype)
    mask = rng.random(x.shape) < 0.1
    mask[..., 0] = False
    x[mask] = -INF
    return x


def assert_same(lazy, ref, dtype=np.float64):
    # Exactly: every step is computed from its own logits alone.
    action, contribution, probs = dask.compute(*lazy)
    np.testing.assert_array_equal(action, ref.action)
    np.testing.assert_array_equal(probs, ref.probs)
    np.testing.assert_array_equal(contribution, ref.contribution)
    assert (
        probs.dtype == ref.probs.dtype and contribution.dtype == ref.contribution.dtype
    )


# Several chunkings of 101 steps: one block, blocks of one step, uneven last
# chunks cut along the model and action axes (rechunked), and an empty chunk.
CHUNKINGS = [
    (101, 5, 4),
    (1, 5, 4),
    (10, 5, 4),
    (33, 2, 3),
    ((50, 1, 50), 5, 4),
    ((40, 0, 61), 5, 4),
]


@needs_dask
class TestThreaded:
    @pytest.fixture(autouse=True)
    def threads(self):
        with dask.config.set(scheduler="threads"):
            yield

    @pytest.mark.parametrize("chunks", CHUNKINGS, ids=str)
    @pytest.mark.parametrize("rule", RULES)
    def test_equals_numpy(self, rule, chunks):
        x = replay()
        options = {
            "rule": rule,
            "weights": [1.0, 0.5, 2.0, 0.0, 1.0],
            "temperature": 0.7,
        }
        lazy = da.from_array(x, chunks=chunks)
        for det, rng in [
            (True, None),
            (False, 2024),
            (False, np.random.SeedSequence(5)),
        ]:
            ref = aggregate(x, deterministic=det, rng=rng, **options)
            assert_same(aggregate(lazy, deterministic=det, rng=rng, **options), ref)

    @pytest.mark.parametrize("rule", RULES)
    @pytest.mark.parametrize("n_actions", [2, 18])
    def test_float32_and_two_actions(self, rule, n_actions):
        x = replay(n_steps=64, n_models=20, n_actions=n_actions, dtype=np.float32)
        ref = aggregate(x, rule=rule, rng=3)
        assert_same(
            aggregate(da.from_array(x, chunks=7), rule=rule, rng=3), ref, np.float32
        )

    @pytest.mark.parametrize("chunks", [(1, 1), (2, 3), (5, 7), (3, 7)], ids=str)
    def test_several_batch_axes(self, chunks):
        # Blocks cut along the last batch axis hold steps that are not
        # contiguous in the flattened order; each still gets its own uniform.
        x = replay(n_steps=35).reshape(5, 7, 5, 4)
        for rule in RULES:
            ref = aggregate(x, rule=rule, rng=8)
            assert_same(
                aggregate(da.from_array(x, chunks=(*chunks, 5, 4)), rule=rule, rng=8),
                ref,
            )

    def test_ints_become_float64(self):
        x = np.arange(60).reshape(3, 4, 5) % 7
        assert_same(aggregate(da.from_array(x, chunks=2), rng=1), aggregate(x, rng=1))

    def test_one_step_without_batch_axes(self):
        x = replay(n_steps=1)[0]
        lazy = aggregate(da.from_array(x, chunks=2), rng=6)
        assert lazy.action.shape == ()
        assert int(lazy.action.compute()) == aggregate(x, rng=6).action

    def test_lazy_chunks_and_types(self):
        calls = []

        def load(block):
            calls.append(block.shape)
            return block

        x = da.from_array(replay(), chunks=(10, 2, 4)).map_blocks(
            load, meta=np.empty((0, 0, 0))
        )
        r = aggregate(x, rule="rank", rng=0)
        assert calls == [], "aggregate computed something"
        assert all(isinstance(field, da.Array) for field in r)
        assert r.action.chunks == x.chunks[:1]
        assert r.contribution.chunks == (x.chunks[0], (5,))
        assert r.probs.chunks == (x.chunks[0], (4,))
        r.action.compute()
        assert calls, "nothing was computed"

    def test_two_aggregations_in_one_compute(self):
        # Distinct graphs for distinct arguments: no key collisions.
        lazy = da.from_array(replay(), chunks=10)
        a, b = dask.compute(
            aggregate(lazy, rng=1).action, aggregate(lazy, rng=2).action
        )
        np.testing.assert_array_equal(a, aggregate(replay(), rng=1).action)
        np.testing.assert_array_equal(b, aggregate(replay(), rng=2).action)

    def test_generator_rng_is_chunking_independent(self):
        x = replay()
        actions = [
            aggregate(
                da.from_array(x, chunks=c), rng=np.random.default_rng(4)
            ).action.compute()
            for c in (1, 13, 101)
        ]
        np.testing.assert_array_equal(actions[0], actions[1])
        np.testing.assert_array_equal(actions[0], actions[2])

    def test_memmap_and_zarr_inputs(self, tmp_path):
        x = replay(n_steps=200, dtype=np.float32)
        np.save(tmp_path / "replay.npy", x)
        stored = np.load(tmp_path / "replay.npy", mmap_mode="r")
        ref = aggregate(x, rule="product", rng=12)
        lazy = da.from_array(stored, chunks=(64, -1, -1))
        assert_same(aggregate(lazy, rule="product", rng=12), ref, np.float32)
        pytest.importorskip("zarr")
        da.from_array(x, chunks=(50, 5, 4)).to_zarr(str(tmp_path / "replay.zarr"))
        lazy = da.from_zarr(str(tmp_path / "replay.zarr"))
        assert_same(aggregate(lazy, rule="product", rng=12), ref, np.float32)


@needs_dask
class TestErrors:
    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"rule": "median"}, ValueError),
            ({"temperature": 0.0}, ValueError),
            ({"weights": [1.0, 2.0]}, ValueError),
            ({"weights": [1.0, -1.0, 1.0, 1.0, 1.0]}, ValueError),
            ({"rng": -3}, ValueError),
            ({"rng": 1.5}, TypeError),
        ],
    )
    def test_eager_errors_match_numpy(self, kwargs, error):
        x = replay(n_steps=4)
        with pytest.raises(error) as numpy_error:
            aggregate(x, **kwargs)
        with pytest.raises(error) as dask_error:
            aggregate(da.from_array(x, chunks=2), **kwargs)
        assert str(dask_error.value) == str(numpy_error.value)

    @pytest.mark.parametrize(
        "x",
        [np.zeros(5), np.zeros((3, 0, 4)), np.zeros((3, 2, 0)), np.array([["a", "b"]])],
        ids=["1-D", "no models", "no actions", "strings"],
    )
    def test_bad_shapes_and_dtypes_raise_at_once(self, x):
        with pytest.raises((TypeError, ValueError)) as numpy_error:
            aggregate(x)
        with pytest.raises(type(numpy_error.value)) as dask_error:
            aggregate(da.from_array(x))
        assert str(dask_error.value) == str(numpy_error.value)

    @pytest.mark.parametrize(
        ("where", "value", "rule", "match"),
        [
            ((7, 4, 2, 1), np.nan, "sum", r"NaN: step \(7, 4\), model 2, action 1"),
            ((9, 0, 1, 3), INF, "rank", r"\+inf: step \(9, 0\), model 1, action 3"),
            (
                (8, 5, 3),
                -INF,
                "majority",
                r"step \(8, 5\), model 3 has all actions at -inf",
            ),
        ],
    )
    def test_invalid_logits_name_the_global_step(self, where, value, rule, match):
        x = replay(n_steps=100).reshape(10, 10, 5, 4)
        x[where] = value
        with pytest.raises(ValueError, match=match):
            aggregate(x, rule=rule, rng=0)
        lazy = aggregate(da.from_array(x, chunks=(3, 4, 5, 4)), rule=rule, rng=0)
        with pytest.raises(ValueError, match=match):
            lazy.action.compute(scheduler="threads")

    def test_other_dask_collections_are_refused(self):
        lazy = dask.delayed(replay)()
        with pytest.raises(
            TypeError, match="dask collection of type Delayed, not a dask array"
        ):
            aggregate(lazy)

    def test_unknown_chunk_sizes(self):
        x = da.from_array(replay(), chunks=10)
        picked = x[x[:, 0, 0] > 0]  # how many steps each chunk keeps is unknown
        with pytest.raises(
            ValueError, match=r"unknown chunk sizes.*compute_chunk_sizes"
        ):
            aggregate(picked)
        picked.compute_chunk_sizes()
        ref = aggregate(replay()[replay()[:, 0, 0] > 0], rng=1)
        assert_same(aggregate(picked, rng=1), ref)

    def test_empty_support_names_the_global_step(self):
        x = np.zeros((30, 2, 2))
        x[23] = [[0.0, -INF], [-INF, 0.0]]
        match = r"every action is forbidden in the ensemble at step \(23,\)"
        with pytest.raises(ValueError, match=match):
            aggregate(x, rule="product", deterministic=True)
        lazy = aggregate(da.from_array(x, chunks=4), rule="product", deterministic=True)
        with pytest.raises(ValueError, match=match):
            lazy.probs.compute(scheduler="threads")


@pytest.fixture(scope="module")
def cluster_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    client = distributed.Client(cluster, timeout=30)
    try:
        yield client
    finally:
        client.close(timeout=10)
        cluster.close(timeout=10)


@needs_dask
@pytest.mark.timeout(60)
class TestDistributed:
    """Two worker processes on 127.0.0.1: chunks computed far from the caller."""

    @pytest.mark.parametrize("rule", RULES)
    def test_equals_numpy(self, cluster_client, rule):
        x = replay(n_steps=300, n_models=20, n_actions=18, dtype=np.float32)
        ref = aggregate(x, rule=rule, rng=99)
        lazy = aggregate(da.from_array(x, chunks=(37, 20, 18)), rule=rule, rng=99)
        futures = cluster_client.compute(list(lazy))
        action, contribution, probs = cluster_client.gather(futures)
        np.testing.assert_array_equal(action, ref.action)
        np.testing.assert_array_equal(probs, ref.probs)
        np.testing.assert_array_equal(contribution, ref.contribution)
        assert len(cluster_client.scheduler_info()["workers"]) == 2

    def test_error_reaches_the_caller(self, cluster_client):
        x = replay(n_steps=300)
        x[211, 1, 2] = np.nan
        lazy = aggregate(da.from_array(x, chunks=50), rng=1)
        with pytest.raises(ValueError, match=r"NaN: step \(211,\), model 1, action 2"):
            cluster_client.compute(lazy.action).result(timeout=30)


@needs_dask
@pytest.mark.parametrize("store", [[], ["--zarr"]], ids=["npy", "zarr"])
def test_replay_example(store):
    if store:
        pytest.importorskip("zarr")
    example = Path(__file__).resolve().parent.parent / "examples" / "replay_dask.py"
    out = python_output(str(example), "--steps", "3000", *store)
    assert out[0] == "log: (3000, 20, 18) float32 in 1 chunks of steps"
    assert [line.split()[0] for line in out[3:7]] == RULES
    assert out[-1].startswith("best rule on this log (argmax): ")


# -- without the extra -------------------------------------------------------

# Runs in a fresh interpreter in which `import dask` fails, as it does when
# the extra is not installed.  A dask collection is any object that speaks
# dask's collection protocol (``__dask_graph__``); such an object cannot be
# aggregated without dask, and converting it to NumPy would load the whole of
# it into memory, so aggregate refuses with an ImportError naming the extra.
WITHOUT_DASK = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoDask(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "dask" or name.startswith("dask."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoDask())
    import ensemble_agg

    assert not any(m == "dask" or m.startswith("dask.") for m in sys.modules)
    print(ensemble_agg.aggregate([[0.0, 1.0]], deterministic=True).action)

    class LoggedReplay:  # a lazy array from some library built on dask
        def __dask_graph__(self):
            return {("replay", 0): 0}

        def __array__(self, dtype=None, copy=None):
            raise AssertionError("must not be loaded into memory")

    try:
        ensemble_agg.aggregate(LoggedReplay())
    except ImportError as exc:
        print(exc)
    """
)


def python_output(*args):
    """stdout lines of a fresh interpreter of this venv run with ``args``."""
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.splitlines()


def test_without_dask_the_library_imports_and_refuses_dask_collections():
    out = python_output("-c", WITHOUT_DASK)
    assert out[0] == "1"
    assert "dask collection" in out[1] and "LoggedReplay" in out[1]
    assert "pip install 'ensemble-agg[dask]'" in out[1]


def test_import_does_not_load_dask():
    code = "import sys, ensemble_agg; print([m for m in sys.modules if m.startswith('dask')])"
    assert python_output("-c", code) == ["[]"]
