"""The TAPP-style API (host/tapp.py) on the emulator: randomized contractions against numpy's einsum
(computed in int64, wrapped to int32), every label role, strides and views, alpha/beta, resident tensors,
the tiling planner, and every TAPP error code. tests/test_tapp_device.py runs a subset on the simulator."""

import numpy as np
import pytest

import tensornic
from tensornic import tapp
from tensornic.engine import engine_sim_config
from tensornic.quantize import dequantize_product, quantize_int8
from tensornic.tapp import TensorInfo

CONFIG = engine_sim_config()


@pytest.fixture(scope="module")
def dev():
    with tensornic.open("emulator", config=CONFIG) as d:
        yield d


def wrap32(x):
    return (np.asarray(x, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def reference(alpha, a, ia, b, ib, beta, c, d, id_):
    """Expected D after the contraction (repeated labels of D: only its diagonal changes)."""
    out_labels = "".join(dict.fromkeys(id_))
    p = np.einsum(f"{ia},{ib}->{out_labels}", a.astype(np.int64), b.astype(np.int64)) if a.size and b.size \
        else np.zeros([dict(zip(ia + ib, a.shape + b.shape))[ch] for ch in out_labels], np.int64)
    expected = np.array(d, copy=True)
    view = diagonal_view(expected, id_)
    cv = diagonal_view(np.asarray(c), id_) if c is not None else 0
    value = alpha * p + (beta * cv.astype(np.int64) if beta else 0)
    view[...] = wrap32(value)
    return expected


def diagonal_view(x, labels):
    """View of x with one axis per unique label (repeated labels: summed strides)."""
    uniq = "".join(dict.fromkeys(labels))
    shape = [x.shape[labels.index(ch)] for ch in uniq]
    strides = [sum(s for s, l in zip(x.strides, labels) if l == ch) for ch in uniq]
    return np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=x.flags.writeable)


def random_view(rng, shape, dtype, writable=False):
    """A random int array of `shape` laid out as a view: permuted axes, reversed axes, gaps, and (inputs
    only) broadcast axes with stride 0."""
    shape = tuple(shape)
    nd = len(shape)
    perm = rng.permutation(nd) if nd else np.arange(0)
    step = [int(rng.integers(1, 3)) for _ in range(nd)]
    big = [shape[p] * step[i] for i, p in enumerate(perm)]
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -2 ** 31), min(info.max, 2 ** 31 - 1)
    base = np.asarray(rng.integers(lo, hi, size=big, dtype=np.int64, endpoint=True).astype(dtype))
    v = base[tuple(slice(None, None, s) for s in step)] if nd else base[...]
    v = v.transpose(np.argsort(perm))
    for ax in range(nd):
        if rng.random() < 0.3:
            v = np.flip(v, ax)
    if not writable and nd and rng.random() < 0.2:
        ax = int(rng.integers(nd))
        v = np.broadcast_to(np.take(v, [0] * 1, axis=ax) if v.shape[ax] else v, v.shape) if v.shape[ax] else v
    assert v.shape == shape
    return v


ROLES = ["H", "M", "N", "K", "RA", "RB"]


def random_case(rng, max_rank=6):
    """Labels with roles → subscripts (with occasional diagonals) and extents."""
    while True:
        n_labels = int(rng.integers(1, 7))
        letters = list("abcdefghij")
        rng.shuffle(letters)
        roles = {letters[i]: ROLES[int(rng.integers(len(ROLES)))] for i in range(n_labels)}
        ia = [l for l, r in roles.items() if r in ("H", "M", "K", "RA")]
        ib = [l for l, r in roles.items() if r in ("H", "N", "K", "RB")]
        id_ = [l for l, r in roles.items() if r in ("H", "M", "N")]
        for lst in (ia, ib, id_):
            if lst and rng.random() < 0.25:
                lst.append(lst[int(rng.integers(len(lst)))])      # a repeated label: diagonal
            rng.shuffle(lst)
        if max(len(ia), len(ib), len(id_)) <= max_rank:
            break
    ext = {l: int(rng.choice([1, 2, 3, 4, 5])) for l in roles}
    if rng.random() < 0.03:
        ext[rng.choice(list(roles))] = 0
    return "".join(ia), "".join(ib), "".join(id_), ext


def run_case(dev, rng, resident=False):
    ia, ib, id_, ext = random_case(rng)
    a = random_view(rng, [ext[l] for l in ia], np.int8)
    b = random_view(rng, [ext[l] for l in ib], np.int8)
    d = random_view(rng, [ext[l] for l in id_], np.int32, writable=True)
    d = np.array(d) if rng.random() < 0.3 else d
    alpha = int(rng.choice([1, 1, 0, -1, 3, 2 ** 31 + 7]))
    beta = int(rng.choice([0, 1, 1, -2, 5]))
    c = random_view(rng, [ext[l] for l in id_], np.int32) if beta else None
    if beta and rng.random() < 0.2:
        c = d                                         # in place: D = alpha·A·B + beta·D
    expected = reference(alpha, a, ia, b, ib, beta, c, d, id_)
    infos = [TensorInfo.of(x) if x is not None else None for x in (a, b, c, d)]
    plan = tapp.tensor_product(dev, infos[0], ia, infos[1], ib, infos[2], id_ if c is not None else None,
                               infos[3], id_)
    if resident:
        ha, hb = dev.upload(a), dev.upload(b)
        hd = dev.upload(d)
        hc = (hd if c is d else dev.upload(c)) if c is not None else None
        plan_r = tapp.tensor_product(dev, ha.info, ia, hb.info, ib, hc.info if hc else None,
                                     id_ if hc else None, hd.info, id_)
        plan_r.execute(alpha, ha, hb, beta, hc, hd)
        got = hd.download()
        for h in {id(x): x for x in (ha, hb, hc, hd) if x is not None}.values():
            h.free()
        expected = reference(alpha, a, ia, b, ib, beta, np.ascontiguousarray(c) if c is not None else None,
                             np.ascontiguousarray(d), id_)
    else:
        plan.execute(alpha, a, b, beta, c, d)
        got = d
    desc = f"{ia},{ib}->{id_} ext={ext} alpha={alpha} beta={beta}"
    np.testing.assert_array_equal(got, expected, err_msg=desc)


@pytest.mark.parametrize("seed", range(8))
def test_random_host_operands(dev, seed):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        run_case(dev, rng)


@pytest.mark.parametrize("seed", range(3))
def test_random_resident_operands(dev, seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(15):
        run_case(dev, rng, resident=True)
    assert tapp._state(dev).heap.largest() == CONFIG.tensor_bytes      # everything freed


def test_einsum_matches_numpy_with_batch_and_permutation(dev):
    rng = np.random.default_rng(7)
    a = rng.integers(-128, 128, (4, 3, 5, 6), dtype=np.int8)      # b i k j
    b = rng.integers(-128, 128, (6, 4, 7, 5), dtype=np.int8)      # j b l k
    d = dev.einsum("bikj,jblk->lbi", a, b)
    np.testing.assert_array_equal(d, wrap32(np.einsum("bikj,jblk->lbi", a.astype(np.int64), b.astype(np.int64))))
    assert d.dtype == np.int32 and d.shape == (7, 4, 3)
    # implicit output (numpy rule: labels used once, sorted)
    x, y = a[0, :, :, 0], b[0, 0].T
    np.testing.assert_array_equal(dev.einsum("ik,kj", x, y), x.astype(np.int64) @ y)


def test_wraparound_modulo_2_32(dev):
    """K = 4096 products of -128·-128 sum to 2^26; alpha 2^7 pushes the result past 2^32."""
    a = np.full((2, 4096), -128, np.int8)
    b = np.full((4096, 3), -128, np.int8)
    c = np.full((2, 3), 2 ** 31 - 1, np.int32)
    d = dev.einsum("ik,kj->ij", a, b, C=c, alpha=2 ** 7 + 2 ** 32, beta=3)
    expected = wrap32(2 ** 7 * 4096 * 16384 + 3 * (2 ** 31 - 1))
    assert (d == expected).all()


def test_zero_mode_and_extent_one_and_zero(dev):
    a = np.array(7, np.int8)
    b = np.array(-9, np.int8)
    d = np.zeros((), np.int32)
    plan = dev.tensor_product(TensorInfo("int8", ()), "", TensorInfo("int8", ()), "", None, None,
                              TensorInfo("int32", ()), "")
    plan.execute(1, a, b, 0, None, d)
    assert int(d) == -63
    # vector dot product into a scalar, extents of 1 everywhere else
    x = np.arange(-5, 5, dtype=np.int8).reshape(1, 10, 1)
    y = np.arange(10, dtype=np.int8).reshape(10, 1)
    assert int(dev.einsum("akb,kc->", x, y)) == int((x.astype(np.int64).ravel() * np.arange(10)).sum())
    # a contracted extent of 0: D = beta·C, no engine pass
    e = np.zeros((3, 0), np.int8)
    f = np.zeros((0, 2), np.int8)
    c = np.arange(6, dtype=np.int32).reshape(3, 2)
    np.testing.assert_array_equal(dev.einsum("ik,kj->ij", e, f, C=c, beta=2), 2 * c)
    # an output extent of 0: nothing to do
    assert dev.einsum("ik,kj->ij", np.zeros((0, 4), np.int8), np.zeros((4, 2), np.int8)).shape == (0, 2)


def test_raw_buffers_negative_and_zero_strides(dev):
    """TAPP-style pointers: a 1-D buffer and the offset of element (0, …, 0); strides negative or zero."""
    rng = np.random.default_rng(3)
    buf_a = rng.integers(-128, 128, 64, dtype=np.int8)
    buf_b = rng.integers(-128, 128, 64, dtype=np.int8)
    a_info = TensorInfo("int8", (4, 5), (-6, 1))       # rows backwards
    b_info = TensorInfo("int8", (5, 3), (2, 0))        # column broadcast
    d_info = TensorInfo("int32", (4, 3), (1, 4))       # column-major D
    plan = dev.tensor_product(a_info, "ik", b_info, "kj", None, None, d_info, "ij")
    d = np.zeros(12, np.int32)
    plan.execute(1, (buf_a, 30), buf_b, 0, None, d)
    a = np.array([[buf_a[30 - 6 * i + k] for k in range(5)] for i in range(4)], np.int64)
    b = np.array([[buf_b[2 * k] for _ in range(3)] for k in range(5)], np.int64)
    np.testing.assert_array_equal(d.reshape(3, 4).T, a @ b)


def test_integer_labels_and_conjugate(dev):
    rng = np.random.default_rng(4)
    a = rng.integers(-128, 128, (3, 4), dtype=np.int8)
    b = rng.integers(-128, 128, (4, 5), dtype=np.int8)
    d = np.zeros((3, 5), np.int32)
    plan = dev.tensor_product(TensorInfo.of(a), [10, 20], TensorInfo.of(b), [20, 30], None, None,
                              TensorInfo.of(d), [10, 30], op_A=tapp.CONJUGATE, op_B="conjugate")
    plan.execute(1, a, b, 0, None, d)
    np.testing.assert_array_equal(d, a.astype(np.int64) @ b)


def test_async_status_and_plan_reuse(dev):
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (6, 7), dtype=np.int8)
    b = rng.integers(-128, 128, (7, 8), dtype=np.int8)
    d = np.zeros((6, 8), np.int32)
    plan = dev.tensor_product(TensorInfo.of(a), "ik", TensorInfo.of(b), "kj", TensorInfo.of(d), "ij",
                              TensorInfo.of(d), "ij")
    status = plan.execute_async(1, a, b, 1, d, d)
    assert status.wait() is d
    assert status.done()
    status = plan.execute_async(1, a, b, 1, d, d)          # accumulate again in place
    status.wait()
    np.testing.assert_array_equal(d, 2 * (a.astype(np.int64) @ b))


def test_resident_chain_keeps_intermediates_on_device(dev):
    """D = A1·B1 + A2·B2 + A3·B3 accumulated on the device; only the final download reads D."""
    rng = np.random.default_rng(6)
    pairs = [(rng.integers(-128, 128, (9, 11), dtype=np.int8), rng.integers(-128, 128, (11, 10), dtype=np.int8))
             for _ in range(3)]
    hd = tapp.empty(dev, (9, 10), "int32")
    handles = [(dev.upload(a), dev.upload(b)) for a, b in pairs]
    for i, (ha, hb) in enumerate(handles):
        dev.einsum("ik,kj->ij", ha, hb, C=hd, beta=1 if i else 0, out=hd)
    stats = dev.link.stats
    before = stats.bytes_received
    result = hd.download()
    assert stats.bytes_received - before < 9 * 10 * 4 + 200
    np.testing.assert_array_equal(result, sum(a.astype(np.int64) @ b for a, b in pairs))
    for ha, hb in handles:
        ha.free()
        hb.free()
    hd.free()


def test_tiling_beyond_tensor_memory():
    """A contraction whose operands are larger than tensor memory (16 KiB here) is tiled; the result is
    exact and explain() reports the blocks and the expected traffic."""
    config = engine_sim_config(tensor_bytes=16 * 1024)
    rng = np.random.default_rng(8)
    a = rng.integers(-128, 128, (40, 300), dtype=np.int8)          # 12 KB
    b = rng.integers(-128, 128, (3, 300, 50), dtype=np.int8)       # 45 KB
    c = rng.integers(-2 ** 31, 2 ** 31, (3, 40, 50), dtype=np.int64).astype(np.int32)
    with tensornic.open("emulator", config=config) as small:
        d = np.zeros((3, 40, 50), np.int32)
        plan = small.tensor_product(TensorInfo.of(a), "ik", TensorInfo.of(b), "bkj", TensorInfo.of(c), "bij",
                                    TensorInfo.of(d), "bij")
        plan.execute(1, a, b, 1, c, d)
        expected = wrap32(np.einsum("ik,bkj->bij", a.astype(np.int64), b.astype(np.int64)) + c)
        np.testing.assert_array_equal(d, expected)
        text = plan.explain()
        assert "tiled into" in text and "expected traffic" in text
        assert plan.last.blocking.blocks > 1 and plan.last.blocking.buffer_bytes <= 16 * 1024
        # alpha ≠ 1 (host epilogue) through the tiled path
        plan.execute(-3, a, b, 2, c, d)
        expected = wrap32(-3 * np.einsum("ik,bkj->bij", a.astype(np.int64), b.astype(np.int64)) + 2 * c.astype(np.int64))
        np.testing.assert_array_equal(d, expected)


def test_explain_says_what_runs_where(dev):
    """A diagonal (i twice in A), a batch label (b), a reduced label (r, in B only) and an alpha ≠ 1."""
    a_info = TensorInfo("int8", (4, 4, 3, 6), (72, 1, 24, 4))
    b_info = TensorInfo("int8", (3, 6, 5, 2))
    d_info = TensorInfo("int32", (3, 4, 5))
    plan = dev.tensor_product(a_info, "iibk", b_info, "bkjr", None, None, d_info, "bij")
    text = plan.explain()
    assert "i  extent 4      free in A" in text and "A 73 (diagonal of 2 modes)" in text
    assert "batch (Hadamard)" in text and "host loop b extent 3" in text
    assert "reduced in B only" in text and "engine loop K" in text
    assert "3 descriptor(s)" in text and "expected traffic" in text
    a = np.zeros(4 * 72, np.int8)
    b = np.ones((3, 6, 5, 2), np.int8)
    d = np.zeros((3, 4, 5), np.int32)
    plan.execute(-1, a, b, 0, None, d)
    text = plan.explain()
    assert "epilogue on the host: D = -1·(A·B)" in text and "last execution: 3 descriptors" in text


def test_quantize_helpers_and_float_inputs(dev):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(5, 8))
    y = rng.normal(size=(8, 3))
    with pytest.raises(TypeError, match="quantize_int8") as info:
        dev.einsum("ik,kj->ij", x, y)
    assert isinstance(info.value, tapp.TappError) and info.value.code == 17
    qx, sx = quantize_int8(x)
    qy, sy = quantize_int8(y)
    assert qx.dtype == np.int8 and np.abs(qx).max() == 127
    approx = dequantize_product(dev.einsum("ik,kj->ij", qx, qy), sx, sy)
    assert np.abs(approx - x @ y).max() < 0.05 * np.abs(x @ y).max() + 0.05
    with pytest.raises(TypeError, match="quantize"):
        dev.einsum("ik,kj->ij", qx, qy, alpha=0.5)
    with pytest.raises(TypeError, match="int8"):
        dev.einsum("ik,kj->ij", qx.astype(np.int64), qy)


# -- every TAPP error code --------------------------------------------------------------------------------

def _i8(*ext):
    return TensorInfo("int8", ext)


def _i32(*ext):
    return TensorInfo("int32", ext)


@pytest.mark.parametrize("code, make", [
    (1, lambda dev: dev.tensor_product(_i8(3, 4), "ik", _i8(5, 2), "kj", None, None, _i32(3, 2), "ij")),
    (2, lambda dev: dev.tensor_product(_i8(3, 4), "ik", _i8(4, 2), "kj", None, None, _i32(9, 2), "ij")),
    (3, lambda dev: dev.tensor_product(_i8(3, 4), "ik", _i8(4, 2), "kj", None, None, _i32(3, 7), "ij")),
    (4, lambda dev: dev.tensor_product(_i8(3, 4), "ik", _i8(4, 2), "kj", None, None, _i32(3, 2, 2), "ijz")),
    (5, lambda dev: dev.tensor_product(_i8(3, 4), "ik", _i8(4, 2), "kj", _i32(3, 2, 1), "ijk", _i32(3, 2), "ij")),
    (6, lambda dev: dev.tensor_product(_i8(3, 4), "ik", _i8(4, 2), "kj", _i32(2, 3), "ji", _i32(3, 2), "ij")),
    (7, lambda dev: dev.tensor_product(_i8(3, 4), "ik", _i8(4, 2), "kj", _i32(3, 3), "ij", _i32(3, 2), "ij")),
    (8, lambda dev: dev.tensor_product(_i8(3, 4), "ik", _i8(4, 2), "kj", None, None,
                                       TensorInfo("int32", (3, 2), (1, 1)), "ij")),
    (9, lambda dev: dev.tensor_product(_i8(3, 4), "ii", _i8(4, 2), "ij", None, None, _i32(2), "j")),
    (10, lambda dev: dev.tensor_product(_i8(3), "i", _i8(2, 3), "jj", None, None, _i32(3), "i")),
    (11, lambda dev: dev.tensor_product(_i8(3), "i", _i8(3), "i", None, None, _i32(3, 4), "ii")),
    (12, lambda dev: dev.tensor_product(_i8(3, 4), "ik", _i8(4, 2), "kj", None, None, _i32(3, 2), "ij")
        .execute(1, np.zeros((3, 4), np.int8), np.zeros((4, 2), np.int8), 1, None, np.zeros((3, 2), np.int32))),
    (13, lambda dev: TensorInfo("int8", (), nmode=-1)),
    (14, lambda dev: TensorInfo("int8", (3, -2))),
    (15, lambda dev: dev.tensor_product(_i8(3, 4), "ik", _i8(4, 2), "kj", None, None, _i32(3, 2), "ij",
                                        precision="fastest")),
    (16, None),
    (17, lambda dev: dev.tensor_product(TensorInfo(tapp.C32, (3, 4)), "ik", _i8(4, 2), "kj", None, None,
                                        _i32(3, 2), "ij")),
])
def test_every_tapp_error_code(dev, code, make):
    if code == 16:
        with tensornic.open("emulator") as plain:           # the default configuration has no engine
            with pytest.raises(tapp.NoExecutor) as info:
                plain.einsum("ik,kj->ij", np.zeros((2, 2), np.int8), np.zeros((2, 2), np.int8))
            assert isinstance(info.value, tensornic.DeviceMismatch)
    else:
        sent = dev.link.stats.bytes_sent
        with pytest.raises(tapp.TappError) as info:
            make(dev)
        assert dev.link.stats.bytes_sent == sent, "validation must come before any device traffic"
    assert info.value.code == code
    assert f"TAPP error {code} " in str(info.value)


def test_error_classes_carry_names():
    names = {cls.code: cls.name for cls in tapp.TappError.__subclasses__()}
    assert names[1] == "TAPP_ERR_EXTENTS_AB" and names[8] == "TAPP_ERR_D_ALIASING"
    assert names[12] == "TAPP_ERR_C_NULL_BETA" and names[17] == "TAPP_ERR_NOT_IMPLEMENTED"
    assert sorted(names) == list(range(1, 18))


def test_operand_mismatch_errors(dev):
    a = np.zeros((3, 4), np.int8)
    b = np.zeros((4, 2), np.int8)
    plan = dev.tensor_product(TensorInfo.of(a), "ik", TensorInfo.of(b), "kj", None, None, _i32(3, 2), "ij")
    with pytest.raises(ValueError, match="extents"):
        plan.execute(1, np.zeros((4, 3), np.int8), b, 0, None, np.zeros((3, 2), np.int32))
    with pytest.raises(ValueError, match="strides"):
        plan.execute(1, np.zeros((4, 3), np.int8).T, b, 0, None, np.zeros((3, 2), np.int32))
    with pytest.raises(ValueError, match="outside"):
        plan.execute(1, np.zeros(5, np.int8), b, 0, None, np.zeros((3, 2), np.int32))
    frozen = np.zeros((3, 2), np.int32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        plan.execute(1, a, b, 0, None, frozen)
    with pytest.raises(TypeError, match="int32"):
        plan.execute(1, a, b, 0, None, np.zeros((3, 2), np.int64))


@pytest.mark.parametrize("seed", range(3))
def test_random_tiled(seed):
    """Random contractions on a device with 4 KiB of tensor memory: the planner tiles every role (batch,
    free, contracted, reduced), host and resident operands mixed."""
    rng = np.random.default_rng(200 + seed)
    with tensornic.open("emulator", config=engine_sim_config(tensor_bytes=4096)) as small:
        for _ in range(6):
            while True:
                ia, ib, id_, ext = random_case(rng, max_rank=4)
                ext = {l: int(rng.integers(3, 16)) for l in ext}
                size = lambda s: int(np.prod([ext[l] for l in set(s)]))
                if size(ia) + size(ib) + 4 * size(id_) > 6000:
                    break
            a = random_view(rng, [ext[l] for l in ia], np.int8)
            b = random_view(rng, [ext[l] for l in ib], np.int8)
            d = random_view(rng, [ext[l] for l in id_], np.int32, writable=True)
            alpha, beta = int(rng.choice([1, -2])), int(rng.choice([0, 1, 3]))
            c = random_view(rng, [ext[l] for l in id_], np.int32) if beta else None
            expected = reference(alpha, a, ia, b, ib, beta, c, d, id_)
            plan = small.tensor_product(TensorInfo.of(a), ia, TensorInfo.of(b), ib,
                                        TensorInfo.of(c) if beta else None, id_ if beta else None,
                                        TensorInfo.of(d), id_)
            plan.execute(alpha, a, b, beta, c, d)
            np.testing.assert_array_equal(d, expected, err_msg=f"{ia},{ib}->{id_} {ext}")
            assert plan.last.blocking.blocks > 1
            assert tapp._state(small).heap.largest() == 4096


def test_tensor_info_tapp_datatypes_and_defaults():
    assert TensorInfo(tapp.I8, (2, 3)).dtype == np.int8
    assert TensorInfo(tapp.I32, (2, 3)).strides == (3, 1)            # default: row-major
    assert TensorInfo("int8", (4, 0, 2)).offset_range() == (0, 0)
    assert TensorInfo("int8", (3, 4), (-4, 1)).offset_range() == (-8, 3)
    assert TensorInfo.of(np.zeros((3, 5), np.int32).T) == TensorInfo("int32", (5, 3), (1, 5))
    with pytest.raises(tapp.InvalidKey):
        TensorInfo(0x2000, (2,))
    with pytest.raises(ValueError):
        TensorInfo("int8", (2, 3), (1,))
