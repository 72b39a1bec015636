"""Bf16Encoder / Bf16Decoder test bench: the gateware against ml_dtypes.bfloat16, bit for bit.

- Stimulus (`bf16_vectors`): binary32 patterns whose lower halves decide the rounding (ties with even and
  odd kept halves, one above and below a tie, zero, all ones) over random or all upper halves, plus every
  class: zeros, subnormals, the largest finite values (which round to Inf), Inf, quiet and signalling NaNs
  of both signs. ml_dtypes converts from float32 (never float64, which would round twice).
- cocotb (two lanes): random idle gaps and backpressure, latency, throughput, nothing left in flight.
- Native driver: every upper half × the decisive lower halves (458 752 patterns) through the encoder, and
  all 65 536 BF16 patterns through the decoder, with idle gaps and backpressure.
"""

import json
import zlib

import cocotb
import numpy as np

from tensornic.rtl.bf16 import BF16_DECODE_LATENCY, BF16_ENCODE_LATENCY, Bf16Decoder, Bf16Encoder
from tensornic.sim import verilator
from tensornic.sim.stream_runner import CocotbStreamBench, StreamDriver, pack, unpack

TEST_MODULE = "tensornic.sim.test_bf16"
COCOTB_LANES = 2
#: Lower halves that decide FP32 → BF16 rounding.
DECISIVE_LOWS = (0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF)


# --- reference and stimulus ----------------------------------------------------------------------------------

def ml_dtypes_encode(bits) -> np.ndarray:
    import ml_dtypes
    with np.errstate(invalid="ignore"):
        return np.asarray(bits, np.uint32).view(np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def ml_dtypes_decode(bits) -> np.ndarray:
    import ml_dtypes
    return np.asarray(bits, np.uint16).view(ml_dtypes.bfloat16).astype(np.float32).view(np.uint32)


def bf16_vectors(n: int | None = None, seed: int = 0) -> np.ndarray:
    """binary32 patterns (uint32). `n=None`: every upper half with each decisive lower half and one random
    one (458 752 patterns); else `n` patterns drawn from the same families plus every special class."""
    rng = np.random.default_rng(seed)
    if n is None:
        upper = np.arange(1 << 16, dtype=np.uint32) << 16
        lows = [np.full(upper.size, low, np.uint32) for low in DECISIVE_LOWS]
        lows.append(rng.integers(0, 1 << 16, upper.size, dtype=np.uint32))
        return np.concatenate([upper | low for low in lows]).astype(np.uint32)
    specials = np.array([0x0000_0000, 0x8000_0000, 0x0000_8000, 0x0001_8000, 0x007F_FFFF, 0x807F_8000,
                         0x0080_0000, 0x7F7F_FFFF, 0xFF7F_8000, 0x7F7F_7FFF, 0x7F80_0000, 0xFF80_0000,
                         0x7FC0_0000, 0xFFC0_0000, 0x7F80_0001, 0xFF80_0001, 0x7FFF_FFFF, 0x7FBF_FFFF,
                         0x3F80_8000, 0x3F81_8000], np.uint32)
    rest = n - specials.size
    upper = rng.integers(0, 1 << 16, rest, dtype=np.uint32) << 16
    low = np.where(rng.random(rest) < 0.7, rng.choice(np.array(DECISIVE_LOWS, np.uint32), rest),
                   rng.integers(0, 1 << 16, rest, dtype=np.uint32))
    # Bias some upper halves towards the interesting exponents: subnormal, near overflow, Inf/NaN.
    exponent = rng.choice(np.array([0x00, 0x01, 0xFE, 0xFF], np.uint32), rest)
    biased = (upper & 0x807F_0000) | (exponent << 23)
    upper = np.where(rng.random(rest) < 0.3, biased, upper)
    return np.concatenate([specials, (upper | low).astype(np.uint32)])


def _check(what, inputs, got, expected):
    bad = np.nonzero(np.asarray(got) != np.asarray(expected))[0]
    if len(bad):
        lines = [f"{int(inputs[i]):#x}: got {int(got[i]):#x}, ml_dtypes {int(expected[i]):#x}" for i in bad[:10]]
        raise AssertionError(f"{what}: {len(bad)} of {len(inputs)} differ from ml_dtypes:\n" + "\n".join(lines))


# --- pytest side ---------------------------------------------------------------------------------------------

def _run_cocotb(kind, testcases):
    seed = zlib.crc32(json.dumps([kind, testcases]).encode())
    make = {"encoder": Bf16Encoder, "decoder": Bf16Decoder}[kind]
    params = {"kind": kind, "lanes": COCOTB_LANES}
    verilator.run_cocotb(lambda: make(COCOTB_LANES), name=f"bf16_{kind}", test_module=TEST_MODULE,
                         params=params, knobs={"seed": seed}, testcase=testcases, seed=seed)


def test_bf16_encoder_cocotb():
    _run_cocotb("encoder", ["encoder_traffic", "encoder_latency"])


def test_bf16_decoder_cocotb():
    _run_cocotb("decoder", ["decoder_traffic", "decoder_latency"])


def _native(make, name, inputs, in_key, seed):
    driver = StreamDriver(make, name=name, params={"lanes": 1})
    run = driver.run(pack(driver.in_layout, {in_key: inputs}), len(inputs), seed=seed, idle=0.2, stall=0.3,
                     long_stall=0.0005).check()
    return unpack(driver.out_layout, run.outputs)[(0,)]


def test_bf16_encoder_native_sweep():
    x = bf16_vectors(None, seed=7)
    got = _native(lambda: Bf16Encoder(1), "bf16_encoder", x, (0,), seed=7)
    _check("FP32 → BF16", x, got, ml_dtypes_encode(x))


def test_bf16_decoder_native_exhaustive():
    u = np.arange(1 << 16, dtype=np.uint32)
    got = _native(lambda: Bf16Decoder(1), "bf16_decoder", u, (0,), seed=8)
    _check("BF16 → FP32", u, got, ml_dtypes_decode(u))


# --- cocotb side ---------------------------------------------------------------------------------------------

def _beats(values, width):
    lanes = COCOTB_LANES
    values = list(values) + [0] * (-len(values) % lanes)
    return [sum(int(values[n + lane]) << (width * lane) for lane in range(lanes))
            for n in range(0, len(values), lanes)], len(values)


def _values(payloads, width):
    mask = (1 << width) - 1
    return [(p >> (width * lane)) & mask for p in payloads for lane in range(COCOTB_LANES)]


async def _bench(dut):
    tb = CocotbStreamBench(dut, seed=verilator.cocotb_params()["seed"])
    await tb.reset()
    return tb


async def _traffic(dut, inputs, in_width, out_width, expected, what):
    tb = await _bench(dut)
    for gaps, backpressure in ((0.0, 0.0), (0.3, 0.0), (0.0, 0.4), (0.3, 0.4)):
        tb.received.clear()
        tb.gaps, tb.backpressure = gaps, backpressure
        tb.long_stalls = 0.002 if gaps and backpressure else 0.0
        beats, padded = _beats(inputs, in_width)
        cocotb.start_soon(tb.send(beats))
        received = await tb.wait_for(len(beats), cycles=50 * len(beats) + 1000)
        _check(f"{what} (gaps {gaps}, backpressure {backpressure})", inputs,
               _values(received, out_width)[:len(inputs)], expected)
        await tb.finish(len(beats))


async def _latency(dut, latency, value, in_width):
    tb = await _bench(dut)
    await tb.send([value])
    await tb.wait_for(1)
    assert tb.received[0][0] - tb.sent[0] == latency, (tb.sent, tb.received)
    tb.received.clear()
    tb.sent.clear()
    await tb.send(list(range(100)))
    await tb.wait_for(100)
    assert tb.sent[-1] - tb.sent[0] == 99 and tb.received[-1][0] - tb.received[0][0] == 99, "not one per cycle"
    await tb.finish(100)


@cocotb.test()
async def encoder_traffic(dut):
    x = bf16_vectors(8000, seed=verilator.cocotb_params()["seed"])
    await _traffic(dut, x, 32, 16, ml_dtypes_encode(x), "FP32 → BF16")


@cocotb.test()
async def encoder_latency(dut):
    await _latency(dut, BF16_ENCODE_LATENCY, 0x3F80_8000, 32)


@cocotb.test()
async def decoder_traffic(dut):
    rng = np.random.default_rng(verilator.cocotb_params()["seed"])
    u = rng.permutation(1 << 16)[:8000].astype(np.uint32)
    u[:6] = [0x7F81, 0xFF81, 0x7FC0, 0x0001, 0x8000, 0x7F80]
    await _traffic(dut, u, 16, 32, ml_dtypes_decode(u), "BF16 → FP32")


@cocotb.test()
async def decoder_latency(dut):
    await _latency(dut, BF16_DECODE_LATENCY, 0x3F80, 16)
