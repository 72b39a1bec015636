"""MxInt8Encoder / MxInt8Decoder test bench: the gateware against the golden model, bit for bit.

- Stimulus (`mx_blocks`): blocks drawn from many families — Gaussian and Student-t (ν = 2) at random
  scales across the whole exponent range, sparse blocks, subnormal-only blocks, blocks whose elements are
  all exact rounding ties, blocks that saturate at ±127, one huge outlier among tiny values, all-zero and
  −0 blocks, random bit patterns, and (rarely) a block with an Inf or NaN.
- cocotb (k = 32, two lanes): random idle gaps and backpressure, a full output stall (the encoder takes
  exactly two blocks, then holds `i.ready` low and loses nothing), latency and sustained throughput;
  decoder traffic including every (scale, element) pair.
- Native driver: 10⁵ random blocks through the encoder at k = 32 and at k = 16, and 10⁵ blocks plus
  every (scale, element) pair through the decoder, with idle gaps, backpressure and long stalls.
"""

import json
import zlib

import cocotb
import numpy as np
from amaranth.hdl import unsigned
from amaranth.lib import data

from tensornic.formats import mxint8_decode, mxint8_encode
from tensornic.rtl.mxint8 import (MXINT8_DECODE_LATENCY, MXINT8_ENCODE_LATENCY, MxInt8Decoder, MxInt8Encoder,
                                  beat_layout)
from tensornic.sim import verilator
from tensornic.sim.stream_runner import CocotbStreamBench, StreamDriver, pack, unpack, words_for

TEST_MODULE = "tensornic.sim.test_mxint8"
COCOTB_LANES = 2
COCOTB_BLOCK = 32
NATIVE_BLOCKS = 100_000


# --- stimulus ------------------------------------------------------------------------------------------------

def mx_blocks(count: int, block: int = 32, seed: int = 0) -> np.ndarray:
    """`count` blocks of `block` float32 values (one flat array); see the module docstring."""
    rng = np.random.default_rng(seed)
    family = rng.integers(0, 11, count)
    out = np.empty((count, block), dtype=np.float32)
    scale = np.ldexp(1.0, rng.integers(-150, 126, (count, 1)))      # overall magnitude per block

    def finite32(values):
        with np.errstate(over="ignore"):
            values = np.asarray(values, np.float64).astype(np.float32)
        return np.where(np.isfinite(values), values, np.float32(3e38)).astype(np.float32)

    gaussian = finite32(rng.standard_normal((count, block)) * scale)
    heavy = finite32(rng.standard_t(2, (count, block)) * scale)
    sparse = np.where(rng.random((count, block)) < 0.85, np.float32(0), gaussian)
    subnormal = (rng.integers(0, 1 << 23, (count, block), dtype=np.uint32)
                 | (rng.integers(0, 2, (count, block), dtype=np.uint32) << 31)).view(np.float32)
    # Ties: element 0 is 2**e (so the block's exponent is e), the rest (q + ½)·2**(e − 6), q in 0..126.
    e = rng.integers(-126, 128, (count, 1))
    ties = np.ldexp((2 * rng.integers(0, 127, (count, block)) + 1).astype(np.float64), e - 7)
    ties[:, :1] = np.ldexp(1.0, e)
    ties = finite32(ties * rng.choice([-1.0, 1.0], (count, block)))
    # Saturation: values just below 2**(e + 1), where q rounds to 128.
    saturate = np.ldexp(rng.uniform(1.98, 2.0, (count, block)), e)
    saturate = finite32(np.minimum(saturate, np.ldexp(1.0, e + 1) * (1 - 2.0 ** -24)) * rng.choice([-1.0, 1.0], (count, block)))
    outlier = finite32(rng.standard_normal((count, block)) * 1e-6)
    outlier[np.arange(count), rng.integers(0, block, count)] = finite32(rng.standard_normal(count) * 1e30)
    zeros = np.where(rng.random((count, 1)) < 0.5, np.float32(0.0), np.float32(-0.0)) * np.ones((1, block), np.float32)
    patterns = rng.integers(0, 0x7F80_0000, (count, block), dtype=np.uint32)
    patterns = (patterns | (rng.integers(0, 2, (count, block), dtype=np.uint32) << 31)).view(np.float32)
    choices = [gaussian, heavy, sparse, subnormal, ties, saturate, outlier, zeros, patterns, gaussian, heavy]
    for n, values in enumerate(choices):
        out[family == n] = values[family == n]
    # About 2 % of the blocks get an Inf or a NaN somewhere.
    bad = np.nonzero(rng.random(count) < 0.02)[0]
    specials = np.array([0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0xFF80_0001, 0x7FFF_FFFF], np.uint32).view(np.float32)
    out[bad, rng.integers(0, block, bad.size)] = rng.choice(specials, bad.size)
    return out.reshape(-1)


def every_scale_and_element():
    """(scales, elements) covering every scale byte with every element value (−128 included), k = 32."""
    scales = np.repeat(np.arange(256, dtype=np.uint8), 8)                # 256 × 8 blocks of 32 = 256²
    elements = np.tile(np.arange(-128, 128, dtype=np.int16), 256).astype(np.int8)
    return scales, elements


def _check(what, got, expected, inputs=None):
    got = np.asarray(got)
    bad = np.nonzero(got != np.asarray(expected))[0]
    if len(bad):
        lines = [f"index {i}: got {int(got[i]):#x}, model {int(expected[i]):#x}"
                 + (f" (input {int(inputs[i]):#x})" if inputs is not None else "") for i in bad[:10]]
        raise AssertionError(f"{what}: {len(bad)} of {len(got)} differ from the golden model:\n" + "\n".join(lines))


# --- native runs (also used by the bench) --------------------------------------------------------------------

def run_native_encoder(blocks: int, block: int = 32, *, seed: int = 1, idle=0.2, stall=0.3, long_stall=0.0005):
    """`blocks` random blocks through the encoder; checks scales, elements and framing against the model."""
    driver = StreamDriver(lambda: MxInt8Encoder(block, 1), name=f"mxint8_encoder_k{block}",
                          params={"block": block, "lanes": 1})
    x = mx_blocks(blocks, block, seed)
    run = driver.run(pack(driver.in_layout, {(0,): x.view(np.uint32)}), x.size, seed=seed, idle=idle,
                     stall=stall, long_stall=long_stall).check()
    out = unpack(driver.out_layout, run.outputs)
    scales, elements = mxint8_encode(x, block)
    position = np.arange(x.size) % block
    _check("first flags", out[("first",)], position == 0)
    _check("last flags", out[("last",)], position == block - 1)
    _check("scales", out[("scale", 0)], np.repeat(scales, block), x.view(np.uint32))
    _check("elements", out[("element", 0)], elements, x.view(np.uint32))
    return blocks, run


def run_native_decoder(blocks: int, *, seed: int = 2, idle=0.2, stall=0.3, long_stall=0.0005):
    """`blocks` encoded random blocks, then every (scale, element) pair, through the decoder (k = 32)."""
    block = 32
    driver = StreamDriver(lambda: MxInt8Decoder(block, 1), name="mxint8_decoder", params={"lanes": 1})
    scales, elements = mxint8_encode(mx_blocks(blocks, block, seed), block)
    all_scales, all_elements = every_scale_and_element()
    scales = np.concatenate([scales, all_scales])
    elements = np.concatenate([elements, all_elements])
    position = np.arange(elements.size) % block
    words = pack(driver.in_layout, {("first",): position == 0, ("last",): position == block - 1,
                                    ("scale", 0): np.repeat(scales, block), ("element", 0): elements})
    run = driver.run(words, elements.size, seed=seed, idle=idle, stall=stall, long_stall=long_stall).check()
    got = unpack(driver.out_layout, run.outputs)[(0,)]
    _check("decoded values", got, mxint8_decode(scales, elements, block).view(np.uint32))
    return scales.size, run


# --- pytest side ---------------------------------------------------------------------------------------------

def _run_cocotb(kind, testcases):
    seed = zlib.crc32(json.dumps([kind, testcases]).encode())
    make = {"encoder": MxInt8Encoder, "decoder": MxInt8Decoder}[kind]
    params = {"kind": kind, "block": COCOTB_BLOCK, "lanes": COCOTB_LANES}
    verilator.run_cocotb(lambda: make(COCOTB_BLOCK, COCOTB_LANES), name=f"mxint8_{kind}",
                         test_module=TEST_MODULE, params=params, knobs={"seed": seed}, testcase=testcases,
                         seed=seed)


def test_mxint8_encoder_cocotb():
    _run_cocotb("encoder", ["encoder_traffic", "encoder_full_stall", "encoder_latency_and_throughput"])


def test_mxint8_decoder_cocotb():
    _run_cocotb("decoder", ["decoder_traffic", "decoder_latency"])


def test_mxint8_encoder_native_k32():
    run_native_encoder(NATIVE_BLOCKS, 32, seed=32)


def test_mxint8_encoder_native_k16():
    run_native_encoder(NATIVE_BLOCKS, 16, seed=16)


def test_mxint8_encoder_native_sustained_rate():
    """No gaps, no stalls: the 32 000 elements go in on consecutive cycles (the run would be longer
    otherwise), and the beats come out on consecutive cycles, the first MXINT8_ENCODE_LATENCY cycles after
    the first block's last element."""
    _, run = run_native_encoder(1000, 32, seed=3, idle=0.0, stall=0.0, long_stall=0.0)
    assert run.first_out_cycle == 31 + MXINT8_ENCODE_LATENCY
    assert run.last_out_cycle - run.first_out_cycle == 1000 * 32 - 1
    assert run.busy_cycles == run.last_out_cycle + 1


def test_mxint8_decoder_native():
    checked, run = run_native_decoder(NATIVE_BLOCKS)
    assert checked >= NATIVE_BLOCKS
    _, run = run_native_decoder(100, idle=0.0, stall=0.0, long_stall=0.0)
    assert run.first_out_cycle == MXINT8_DECODE_LATENCY and run.busy_cycles == run.inputs + MXINT8_DECODE_LATENCY


# --- cocotb side ---------------------------------------------------------------------------------------------

LAYOUT = beat_layout(COCOTB_LANES)
IN_LAYOUT = data.ArrayLayout(unsigned(32), COCOTB_LANES)


def _as_ints(words):
    """Payload integers from driver-style word rows."""
    return [sum(int(w) << (32 * i) for i, w in enumerate(row)) for row in words]


def _encoder_inputs(x):
    """Beat integers for the encoder's input: lane l carries x's l-th equal part (its own block sequence)."""
    per_lane = x.reshape(COCOTB_LANES, -1).view(np.uint32)
    return _as_ints(pack(IN_LAYOUT, {(lane,): per_lane[lane] for lane in range(COCOTB_LANES)}))


def _beat_fields(payloads):
    width = words_for(LAYOUT.size)
    words = np.array([[(p >> (32 * i)) & 0xFFFF_FFFF for i in range(width)] for p in payloads], np.uint32)
    return unpack(LAYOUT, words.reshape(-1, width))


def _check_encoder_output(x, payloads):
    fields = _beat_fields(payloads)
    n = len(payloads)
    position = np.arange(n) % COCOTB_BLOCK
    _check("first", fields[("first",)], position == 0)
    _check("last", fields[("last",)], position == COCOTB_BLOCK - 1)
    for lane, values in enumerate(x.reshape(COCOTB_LANES, -1)):
        scales, elements = mxint8_encode(values, COCOTB_BLOCK)
        _check(f"lane {lane} scales", fields[("scale", lane)], np.repeat(scales, COCOTB_BLOCK))
        _check(f"lane {lane} elements", fields[("element", lane)], elements)


async def _bench(dut):
    tb = CocotbStreamBench(dut, seed=verilator.cocotb_params()["seed"])
    await tb.reset()
    return tb


@cocotb.test()
async def encoder_traffic(dut):
    tb = await _bench(dut)
    seed = verilator.cocotb_params()["seed"]
    for phase, (gaps, backpressure) in enumerate(((0.0, 0.0), (0.3, 0.0), (0.0, 0.4), (0.3, 0.4))):
        tb.received.clear()
        tb.gaps, tb.backpressure = gaps, backpressure
        tb.long_stalls = 0.002 if gaps and backpressure else 0.0
        x = mx_blocks(40 * COCOTB_LANES, COCOTB_BLOCK, seed + phase)
        beats = _encoder_inputs(x)
        cocotb.start_soon(tb.send(beats))
        received = await tb.wait_for(len(beats), cycles=50 * len(beats) + 1000)
        _check_encoder_output(x, received)
        await tb.finish(len(beats))


@cocotb.test()
async def encoder_full_stall(dut):
    """Output stalled: the encoder takes two whole blocks (both banks), then no more; on release every beat
    comes out once, in order."""
    from cocotb.triggers import ClockCycles
    tb = await _bench(dut)
    tb.stalled = True
    x = mx_blocks(5 * COCOTB_LANES, COCOTB_BLOCK, 9)
    beats = _encoder_inputs(x)
    sender = cocotb.start_soon(tb.send(beats))
    await ClockCycles(dut.clk, 400)
    assert len(tb.sent) == 2 * COCOTB_BLOCK, f"{len(tb.sent)} elements taken while stalled"
    assert not tb.received
    tb.stalled = False
    await sender
    received = await tb.wait_for(len(beats))
    _check_encoder_output(x, received)
    await tb.finish(len(beats))


@cocotb.test()
async def encoder_latency_and_throughput(dut):
    tb = await _bench(dut)
    x = mx_blocks(4 * COCOTB_LANES, COCOTB_BLOCK, 4)
    beats = _encoder_inputs(x)
    await tb.send(beats)
    received = await tb.wait_for(len(beats))
    assert tb.sent[-1] - tb.sent[0] == len(beats) - 1, "the encoder paused its input"
    assert tb.received[0][0] - tb.sent[COCOTB_BLOCK - 1] == MXINT8_ENCODE_LATENCY
    assert tb.received[-1][0] - tb.received[0][0] == len(beats) - 1, "the beats did not flow one per cycle"
    _check_encoder_output(x, received)
    await tb.finish(len(beats))


def _decoder_inputs(scales_per_lane, elements_per_lane):
    n = elements_per_lane[0].size
    position = np.arange(n) % COCOTB_BLOCK
    fields = {("first",): position == 0, ("last",): position == COCOTB_BLOCK - 1}
    for lane in range(COCOTB_LANES):
        fields[("scale", lane)] = np.repeat(scales_per_lane[lane], COCOTB_BLOCK)
        fields[("element", lane)] = elements_per_lane[lane]
    return _as_ints(pack(LAYOUT, fields))


@cocotb.test()
async def decoder_traffic(dut):
    tb = await _bench(dut)
    seed = verilator.cocotb_params()["seed"]
    all_scales, all_elements = every_scale_and_element()
    for phase, (gaps, backpressure) in enumerate(((0.0, 0.0), (0.3, 0.0), (0.0, 0.4), (0.3, 0.4))):
        tb.received.clear()
        tb.gaps, tb.backpressure = gaps, backpressure
        tb.long_stalls = 0.002 if gaps and backpressure else 0.0
        encoded = [mxint8_encode(mx_blocks(40, COCOTB_BLOCK, seed + 10 * phase + lane), COCOTB_BLOCK)
                   for lane in range(COCOTB_LANES)]
        # One quarter of the every-(scale, element) table per phase, on lane 0.
        part = slice(phase * 512, (phase + 1) * 512)
        scales = [np.concatenate([encoded[0][0], all_scales[part]]),
                  np.concatenate([encoded[1][0], np.flip(all_scales[part])])]
        elements = [np.concatenate([encoded[0][1], all_elements[part.start * 32:part.stop * 32]]),
                    np.concatenate([encoded[1][1], np.flip(all_elements[part.start * 32:part.stop * 32])])]
        beats = _decoder_inputs(scales, elements)
        cocotb.start_soon(tb.send(beats))
        received = await tb.wait_for(len(beats), cycles=50 * len(beats) + 1000)
        for lane in range(COCOTB_LANES):
            got = [(p >> (32 * lane)) & 0xFFFF_FFFF for p in received]
            _check(f"lane {lane}", got, mxint8_decode(scales[lane], elements[lane], COCOTB_BLOCK).view(np.uint32))
        await tb.finish(len(beats))


@cocotb.test()
async def decoder_latency(dut):
    tb = await _bench(dut)
    beats = _decoder_inputs([np.array([127], np.uint8)] * COCOTB_LANES,
                            [np.full(COCOTB_BLOCK, 64, np.int8)] * COCOTB_LANES)
    await tb.send(beats[:1])
    await tb.wait_for(1)
    assert tb.received[0][0] - tb.sent[0] == MXINT8_DECODE_LATENCY
    assert tb.received[0][1] == 0x3F80_0000 | (0x3F80_0000 << 32)
    await tb.finish(1)
