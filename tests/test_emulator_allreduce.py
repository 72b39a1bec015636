"""tensornic.emulator.allreduce: the NIC's ring semantics, checked against direct statements of them."""

import numpy as np
import pytest

from tensornic import emulator, formats


def ranks(n, length, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(length) * scale).astype(np.float32) for _ in range(n)]


def ring_sum_fp32(xs, chunk_of, n):
    """Chunk c's total in the ring's order: ((x_c + x_{c+1}) + …) + x_{c-1}, in float32."""
    total = np.empty_like(xs[0])
    for i in range(xs[0].size):
        c = chunk_of(i)
        acc = xs[c][i]
        for step in range(1, n):
            acc = np.float32(acc + xs[(c + step) % n][i])
        total[i] = acc
    return total


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_fp32_ring_order_and_identical_replicas(n):
    length = 100                                   # not a multiple of n·32: padding is added and removed
    xs = ranks(n, length, seed=n)
    out = emulator.allreduce(xs)
    assert len(out) == n and all(o.dtype == np.float32 and o.size == length for o in out)
    for o in out[1:]:
        assert o.tobytes() == out[0].tobytes()
    chunk = -(-length // (n * 32)) * (n * 32) // n
    assert out[0].tobytes() == ring_sum_fp32(xs, lambda i: i // chunk, n).tobytes()


def test_exact_when_representable():
    base = (np.arange(64) % 16).astype(np.float32)      # every partial sum fits BF16's 8-bit significand
    xs = [base * (r + 1) for r in range(4)]
    out = emulator.allreduce(xs, "bf16", "bf16")
    np.testing.assert_array_equal(out[0], base * 10)


@pytest.mark.parametrize("rs, ag", [("bf16", "fp32"), ("fp32", "mxint8"), ("bf16", "mxint8"),
                                    ("mxint8", "mxint8")])
@pytest.mark.parametrize("block", [16, 32])
def test_codecs_follow_the_definition(rs, ag, block):
    n, length = 4, 3 * 4 * block
    xs = ranks(n, length, seed=7)
    out = emulator.allreduce(xs, rs, ag, mx_block=block)
    chunk = length // n
    expect = np.empty(length, np.float32)
    for c in range(n):
        s = slice(c * chunk, (c + 1) * chunk)
        p = xs[c][s]
        for step in range(1, n):
            p = formats.fp32_add(emulator.codec_round_trip(p, rs, block), xs[(c + step) % n][s])
        expect[s] = emulator.codec_round_trip(p, ag, block)
    assert out[2].tobytes() == expect.tobytes()
    err = np.linalg.norm(out[0] - np.sum(xs, axis=0)) / np.linalg.norm(np.sum(xs, axis=0))
    assert err < 0.05


def test_nan_and_inf_propagate():
    n, block = 3, 32
    xs = ranks(n, n * block * 2, seed=3)
    xs[1][5] = np.nan
    xs[2][70] = np.inf
    out = emulator.allreduce(xs, "fp32", "mxint8", mx_block=block)[0]
    bits = out.view(np.uint32)
    assert np.all(bits[0:32] == 0x7FC00000)          # the NaN's whole MXINT8 block
    assert np.all(bits[64:96] == 0x7FC00000)         # Inf in a block also makes the block NaN
    assert np.all(np.isfinite(out[32:64]))
    fp = emulator.allreduce(xs)[0]
    assert fp.view(np.uint32)[5] == 0x7FC00000 and fp[70] == np.inf


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="float32"):
        emulator.allreduce([np.zeros(4)])
    with pytest.raises(ValueError, match="same length"):
        emulator.allreduce([np.zeros(4, np.float32), np.zeros(5, np.float32)])
    with pytest.raises(ValueError, match="codecs are"):
        emulator.allreduce([np.zeros(4, np.float32)], rs_codec="fp8")
    with pytest.raises(ValueError, match="mx_block"):
        emulator.allreduce([np.zeros(4, np.float32)], mx_block=24)
    with pytest.raises(ValueError, match="at least one"):
        emulator.allreduce([])
