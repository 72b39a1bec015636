"""The contraction engine through the simulated device (host → pty → Verilated SoC), as a user drives it:
write operands into tensor memory, submit descriptors, wait, read D and compare with the golden model."""

import numpy as np
import pytest

import tensornic
from tensornic import contraction_model as cm
from tensornic.engine import Engine, OutOfRange, StrideOverflow, ZeroExtent, engine_sim_config
from tensornic.rtl import contraction_format as cf

SIM_CONFIG = engine_sim_config()


@pytest.fixture(scope="module", params=["sim", "emulator"])
def eng(request):
    """The same tests on the Verilated SoC and on the emulator (golden model behind the same registers)."""
    with tensornic.open(request.param, config=SIM_CONFIG) as dev:
        yield Engine(dev)


def image(eng, rng, used):
    """Fill the first `used` bytes of tensor memory with random bytes; return them as the model's image."""
    mem = np.zeros(eng.tensor_bytes, dtype=np.uint8)
    mem[:used] = rng.integers(0, 256, used, dtype=np.uint8)
    eng.write_tensor(0, mem[:used])
    return mem


def check_region(eng, expected, start, nbytes):
    got = eng.read_tensor(start, np.uint8, nbytes)
    bad = np.nonzero(got != expected[start:start + nbytes])[0]
    assert bad.size == 0, f"{bad.size} bytes differ, first at offset {start + bad[0]:#x}"


def test_engine_is_discovered(eng):
    info = eng.dev.info
    assert info["engine_rows"] == SIM_CONFIG.engine_rows and info["engine_cols"] == SIM_CONFIG.engine_cols
    assert info["engine_width"] == 8 and info["engine_loops"] >= 6
    assert info["tensor_bytes"] == SIM_CONFIG.tensor_bytes
    assert eng.dev.regions["tensor"][1] == SIM_CONFIG.tensor_bytes


def test_gemm_partial_tiles_accumulate(eng):
    rng = np.random.default_rng(1)
    m, n, k = 70, 37, 300                   # not multiples of the array, tile or K chunk
    a_at, b_at, c_at, d_at = 0, 32768, 49152, 65536
    mem = image(eng, rng, 98304)
    desc = cm.gemm(m, n, k, base_a=a_at, base_b=b_at, base_c=c_at, base_d=d_at, accumulate=True)
    expected = cm.execute(desc, mem)
    eng.clear_counters()
    eng.run(desc)
    check_region(eng, expected, d_at, m * n * 4)
    counters = eng.counters()
    assert counters["mac_count"] == m * n * k
    assert 0 < counters["utilization"] <= 1


def test_permuted_contraction_negative_strides(eng):
    """D[a,b,c] = Σ_{d,e} A[d,a,e]·B[e,c,d,b] with A's a reversed in memory."""
    rng = np.random.default_rng(2)
    ea, eb_, ec, ed, ee = 9, 5, 6, 7, 3
    mem = image(eng, rng, 32768)
    # Column-major dense layouts (first mode fastest), A's mode a stored backwards.
    sa = {"d": 1, "a": -ed, "e": ed * ea}
    sb = {"e": 1, "c": ee, "d": ee * ec, "b": ee * ec * ed}
    sd = {"a": 1, "b": ea, "c": ea * eb_}
    loops = (
        cm.Loop(ec, cf.ROLE_N, stride_b=sb["c"], stride_d=sd["c"]),
        cm.Loop(ea, cf.ROLE_M, stride_a=sa["a"], stride_d=sd["a"]),
        cm.Loop(ed, cf.ROLE_K, stride_a=sa["d"], stride_b=sb["d"]),
        cm.Loop(eb_, cf.ROLE_N, stride_b=sb["b"], stride_d=sd["b"]),
        cm.Loop(ee, cf.ROLE_K, stride_a=sa["e"], stride_b=sb["e"]),
    )
    desc = cm.Descriptor(loops, base_a=(ea - 1) * ed, base_b=4096, base_d=16384)
    expected = cm.execute(desc, mem)
    eng.run(desc)
    check_region(eng, expected, 16384, ea * eb_ * ec * 4)


def test_queued_chain_with_fence(eng):
    """Two descriptors queued back to back; the second accumulates onto the first's D (needs the fence)."""
    rng = np.random.default_rng(3)
    mem = image(eng, rng, 65536)
    first = cm.gemm(20, 24, 40, base_a=0, base_b=2048, base_d=8192)
    second = cm.gemm(20, 24, 16, base_a=4096, base_b=6144, base_c=8192, base_d=8192, accumulate=True)
    expected = cm.execute(second, cm.execute(first, mem))
    eng.submit(first)
    seq = eng.submit(second)
    eng.wait(seq)
    check_region(eng, expected, 8192, 20 * 24 * 4)


def test_bad_descriptors_raise_and_leave_memory(eng):
    rng = np.random.default_rng(4)
    mem = image(eng, rng, 16384)
    size = eng.tensor_bytes
    out_of_range = cm.gemm(8, 8, 8, base_a=0, base_b=1024, base_d=size - 64)
    with pytest.raises(OutOfRange) as info:
        eng.submit(out_of_range)               # the host-side check
    assert info.value.operand == "d"
    # The device's own check: nothing is written, the engine halts, reset() recovers.
    seq = eng.submit(out_of_range, check=False)
    with pytest.raises(OutOfRange):
        eng.wait(seq)
    zero = cm.Descriptor((cm.Loop(0, cf.ROLE_M, 1, 0, 1, 1),), base_d=4096)
    with pytest.raises(ZeroExtent):
        eng.submit(zero)
    huge = cm.Descriptor((cm.Loop(2, cf.ROLE_K, 1 << 30, 1),), base_d=4096)
    with pytest.raises(StrideOverflow):
        eng.submit(huge)
    assert eng.dev.read_reg("engine.status") & cf.STATUS_ERROR
    eng.reset()
    check_region(eng, mem, 0, 16384)
    good = cm.gemm(5, 6, 7, base_a=0, base_b=512, base_d=8192)
    expected = cm.execute(good, mem)
    eng.run(good)
    check_region(eng, expected, 8192, 5 * 6 * 4)
