"""The 48 contractions of the TCCG benchmark (Springer & Bientinesi), scaled down: all 48 on the emulator,
a representative four on the simulated device (one module-scoped device; Verilator build cached).

Layouts follow the paper (first index fastest); each case is checked against numpy's einsum computed in
int64 and wrapped to int32, and the engine's MAC counter must equal the contraction's useful MACs."""

import math

import numpy as np
import pytest

import tensornic
from tensornic import tapp
from tensornic.bench_tapp import TCCG, numpy_reference, tccg_case
from tensornic.engine import engine_sim_config

CONFIG = engine_sim_config()
#: One of each kind: 3-D GEMM-like with A's free index fastest (1), plain GEMM (12), 4-D with A's free
#: and B's contracted index fastest (21), and a 6-D output with a 4-D A (36).
SIM_SUBSET = (0, 11, 20, 35)


@pytest.fixture(scope="module")
def emulator():
    with tensornic.open("emulator", config=CONFIG) as dev:
        yield dev


def check(dev, index, budget, resident=False):
    pattern, a, b, subs, ext = tccg_case(index, budget)
    expected = numpy_reference(subs, a, b)
    eng = tapp._state(dev).engine
    eng.clear_counters()
    if resident:
        ha, hb = dev.upload(a), dev.upload(b)
        hd = tapp.empty(dev, expected.shape, "int32")
        dev.einsum(subs, ha, hb, out=hd)
        d = hd.download()
        for h in (ha, hb, hd):
            h.free()
    else:
        d = dev.einsum(subs, a, b)
    np.testing.assert_array_equal(d, expected, err_msg=f"TCCG {index + 1} {pattern} {ext}")
    assert eng.counters()["mac_count"] == math.prod(ext.values())
    return pattern


def test_table_has_48_patterns():
    assert len(TCCG) == 48 and len({p for p, _ in TCCG}) == 48
    for pattern, ext in TCCG:
        d, a, b = pattern.split("-")
        assert set(d) | set(a) | set(b) == set(ext)
        assert set(d) <= set(a) | set(b)


@pytest.mark.parametrize("index", range(48))
def test_tccg_on_emulator(emulator, index):
    check(emulator, index, budget=6000, resident=index % 4 == 3)


def test_tccg_on_emulator_larger_than_tensor_memory():
    """TCCG 21 at a size whose operands exceed a 16 KiB tensor memory: tiled, still exact."""
    with tensornic.open("emulator", config=engine_sim_config(tensor_bytes=16 * 1024)) as small:
        pattern, a, b, subs, ext = tccg_case(20, budget=2 ** 20)
        assert a.nbytes + b.nbytes + 4 * math.prod(ext[c] for c in pattern.split("-")[0]) > 16 * 1024
        np.testing.assert_array_equal(small.einsum(subs, a, b), numpy_reference(subs, a, b))


@pytest.fixture(scope="module")
def sim():
    with tensornic.open("sim", config=CONFIG) as dev:
        yield dev


def test_tccg_subset_and_tapp_features_on_simulated_device(sim):
    """One test (one simulator, one xdist worker): four TCCG patterns, then the TAPP features that have
    their own code paths — batch + reduced + diagonal labels with negative strides, alpha/beta epilogue,
    a resident chain, a tiled run, and a validation error that sends nothing."""
    for index in SIM_SUBSET:
        check(sim, index, budget=20000, resident=index == 20)
    rng = np.random.default_rng(1)
    # D[b, i, n] = Σ_{k, r, s} A[i, k, b, i, r] · B[s, n, b, k]: i is a diagonal of A, r and s reduced.
    a = rng.integers(-128, 128, (5, 4, 3, 5, 2), dtype=np.int8)[:, ::-1]
    b = rng.integers(-128, 128, (3, 6, 3, 4), dtype=np.int8).transpose(0, 1, 2, 3)[:, :, :, ::-1]
    c = rng.integers(-2 ** 31, 2 ** 31, (3, 5, 6), dtype=np.int64).astype(np.int32)
    d = sim.einsum("ikbir,snbk->bin", a, b, C=c, alpha=-7, beta=3)
    p = np.einsum("ikbir,snbk->bin", a.astype(np.int64), b.astype(np.int64))
    np.testing.assert_array_equal(d, ((-7 * p + 3 * c.astype(np.int64)) & 0xFFFFFFFF).astype(np.uint32).view(np.int32))
    # a resident chain: D = A1·B1 + A2·B2, intermediates never leave the device
    hd = tapp.empty(sim, (7, 9), "int32")
    pairs = [(rng.integers(-128, 128, (7, 12), dtype=np.int8), rng.integers(-128, 128, (12, 9), dtype=np.int8))
             for _ in range(2)]
    handles = [(sim.upload(x), sim.upload(y)) for x, y in pairs]
    for i, (hx, hy) in enumerate(handles):
        sim.einsum("ik,kj->ij", hx, hy, C=hd, beta=1 if i else 0, out=hd)
    np.testing.assert_array_equal(hd.download(), sum(x.astype(np.int64) @ y for x, y in pairs))
    for h in [hd] + [h for pair in handles for h in pair]:
        h.free()
    # tiled: a resident placeholder leaves 8 KiB of tensor memory free, so 20 KB of operands need blocks
    blocker = tapp.empty(sim, ((sim.regions["tensor"][1] - 8192) // 4,), "int32")
    try:
        x = rng.integers(-128, 128, (3, 40, 100), dtype=np.int8)
        y = rng.integers(-128, 128, (100, 30), dtype=np.int8)[::-1]
        c = rng.integers(-1000, 1000, (3, 40, 30), dtype=np.int32)
        d = np.zeros_like(c)
        info = tapp.TensorInfo.of
        plan = sim.tensor_product(info(x), "bik", info(y), "kj", info(c), "bij", info(d), "bij")
        plan.execute(1, x, y, 1, c, d)
        np.testing.assert_array_equal(d, np.einsum("bik,kj->bij", x.astype(np.int64), y.astype(np.int64)) + c)
        assert plan.last.blocking.blocks > 1
    finally:
        blocker.free()
    sent = sim.link.stats.bytes_sent
    with pytest.raises(tapp.ExtentMismatchAB):
        sim.einsum("ik,kj->ij", np.zeros((2, 3), np.int8), np.zeros((4, 2), np.int8))
    assert sim.link.stats.bytes_sent == sent


@pytest.mark.slow
@pytest.mark.parametrize("index", range(48))
def test_all_tccg_on_simulated_device(sim, index):
    """The full 48 on the Verilated SoC, larger than in CI (make test-all)."""
    check(sim, index, budget=40000, resident=index % 2 == 1)
