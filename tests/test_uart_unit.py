"""Unit tests of rtl/uart.py in amaranth.sim: divisor arithmetic, and each direction against a plain-Python
bit-level model of an 8N1 line (never against the other direction of the same UART, except the one
loopback test of UartPhy)."""

import random

import pytest
from amaranth.sim import Simulator

from tensornic.rtl.uart import (DIVISOR_BITS, DIVISOR_FRAC_BITS, UartPhy, UartRx, UartTx, baud_for,
                                divisor_for)


# --- plain-Python model of the line --------------------------------------------------------------------

def frame_bits(byte, stop=1):
    """The ten line levels of one 8N1 frame: start, eight data bits LSB first, stop."""
    return [0] + [(byte >> k) & 1 for k in range(8)] + [stop]


def line_waveform(frames, cycles_per_bit, *, gaps=None, lead=3.0, tail=None):
    """Per-cycle line levels for `frames` (lists of bit levels) sent at `cycles_per_bit` (any real number).

    Bit edges fall at exact real-valued times; cycle c sees the level in force at time c. `gaps` are idle
    times (in cycles, real) before each frame after the first; `lead` is the idle time before the first.
    """
    segments = []                        # (start time, duration, level)
    t = lead
    for n, bits in enumerate(frames):
        if n and gaps:
            t += gaps[n - 1]
        for level in bits:
            segments.append((t, cycles_per_bit, level))
            t += cycles_per_bit
    end = t + (tail if tail is not None else 3 * cycles_per_bit)
    wave = []
    k = 0
    for c in range(int(end) + 1):
        while k < len(segments) and c >= segments[k][0] + segments[k][1]:
            k += 1
        if k < len(segments) and c >= segments[k][0]:
            wave.append(segments[k][2])
        else:
            wave.append(1)
    return wave


def decode_line(wave, cycles_per_bit):
    """Decode per-cycle line levels into bytes by mid-bit sampling. Raises AssertionError on a bad stop
    bit. Returns (bytes, list of start-edge cycles)."""
    out, starts = [], []
    c = 1
    while c < len(wave):
        if wave[c - 1] == 1 and wave[c] == 0:
            mid = lambda k: int(c + (k + 0.5) * cycles_per_bit)
            assert mid(9) < len(wave), f"frame starting at cycle {c} is cut off"
            assert wave[mid(0)] == 0, f"start bit at cycle {c} does not last to its middle"
            byte = sum(wave[mid(k + 1)] << k for k in range(8))
            assert wave[mid(9)] == 1, f"stop bit of the frame at cycle {c} is low"
            out.append(byte)
            starts.append(c)
            c = mid(9)
        c += 1
    return out, starts


def cpb(divisor):
    return divisor / (1 << DIVISOR_FRAC_BITS)


def sim_run(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


# --- divisor arithmetic ----------------------------------------------------------------------------------

def test_divisor_format():
    assert DIVISOR_BITS == 20 and DIVISOR_FRAC_BITS == 4


@pytest.mark.parametrize("clock_hz, baud, divisor", [
    (25_000_000, 3_000_000, 133),       # 8.333 cycles/bit → 8.3125
    (48_000_000, 3_000_000, 256),       # exactly 16
    (50_000_000, 3_000_000, 267),       # 16.667 → 16.6875
    (12_000_000, 115_200, 1667),        # 104.1667 → 104.1875
    (100_000_000, 9600, 166667),        # 10416.67 cycles/bit
    (16_000_000, 4_000_000, 64),        # the minimum: 4 cycles/bit
])
def test_divisor_for(clock_hz, baud, divisor):
    assert divisor_for(clock_hz, baud) == divisor
    actual = baud_for(clock_hz, divisor)
    # The rounding error is at most half a divisor step: 1/32 cycle per bit.
    assert abs(clock_hz / actual - clock_hz / baud) <= 1 / 32 + 1e-9


def test_divisor_3mbaud_error():
    assert abs(baud_for(25e6, divisor_for(25e6, 3e6)) / 3e6 - 1) < 0.003
    assert baud_for(48e6, divisor_for(48e6, 3e6)) == 3e6


def test_divisor_rounds_half_up():
    # 16 * 10 / 3.2 = 50.0 exactly; 16 * 1001 / 32 = 500.5 → 501
    assert divisor_for(1001, 32) == 501


def test_divisor_limits():
    assert divisor_for(65535.9375 * 16, 16) == (1 << DIVISOR_BITS) - 1
    with pytest.raises(ValueError, match="at least 4"):
        divisor_for(25_000_000, 12_500_000)          # 2 cycles per bit
    with pytest.raises(ValueError, match="at least 4"):
        divisor_for(10_000_000, 2_600_000)           # 3.85 cycles per bit
    with pytest.raises(ValueError, match="at most"):
        divisor_for(100_000_000, 1200)               # 83333 cycles per bit
    with pytest.raises(ValueError, match="positive"):
        divisor_for(25_000_000, 0)
    with pytest.raises(ValueError, match="positive"):
        divisor_for(-1, 9600)
    with pytest.raises(ValueError, match="positive"):
        baud_for(25_000_000, 0)
    with pytest.raises(TypeError):
        divisor_for("25MHz", 9600)


def test_phy_parameters():
    with pytest.raises(ValueError, match="rx_fifo_depth"):
        UartPhy(rx_fifo_depth=0)
    with pytest.raises(TypeError, match="rx_fifo_depth"):
        UartPhy(rx_fifo_depth=2.5)
    UartPhy(rx_fifo_depth=1)


def test_model_round_trip():
    data = [0x00, 0xFF, 0xA5, 0x01, 0x80]
    for c in (8, 8.3125, 16.6875):
        wave = line_waveform([frame_bits(b) for b in data], c, gaps=[0, 5.5, 0, 1])
        assert decode_line(wave, c)[0] == data


# --- transmitter -----------------------------------------------------------------------------------------

def run_tx(divisor, data, *, gap_chance=0.0, seed=0, tail_bits=2):
    """Send `data` through UartTx, offering each byte after a random number of idle cycles. Returns the
    per-cycle tx levels, the cycle each byte was taken, and busy samples."""
    dut = UartTx()
    rng = random.Random(seed)
    wave, taken, busy = [], [], []

    async def tb(ctx):
        ctx.set(dut.divisor, divisor)
        assert ctx.get(dut.tx) == 1 and ctx.get(dut.busy) == 0
        cycle = 0
        for byte in data:
            while rng.random() < gap_chance:
                ctx.set(dut.i.valid, 0)
                wave.append(ctx.get(dut.tx)); busy.append(ctx.get(dut.busy))
                await ctx.tick(); cycle += 1
            ctx.set(dut.i.valid, 1)               # and the payload is held until it is taken
            ctx.set(dut.i.payload, byte)
            while True:
                wave.append(ctx.get(dut.tx)); busy.append(ctx.get(dut.busy))
                done = ctx.get(dut.i.ready)
                await ctx.tick(); cycle += 1
                if done:
                    taken.append(cycle - 1)
                    break
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.i.payload, 0xEE)
        for _ in range(int((10 + tail_bits) * cpb(divisor)) + 2):
            wave.append(ctx.get(dut.tx)); busy.append(ctx.get(dut.busy))
            await ctx.tick()

    sim_run(dut, tb)
    return wave, taken, busy


@pytest.mark.parametrize("divisor", [128, 133, 267])
def test_tx_back_to_back(divisor):
    rng = random.Random(divisor)
    data = [0x01, 0x80, 0x55, 0x00, 0xFF] + [rng.randrange(256) for _ in range(7)]
    wave, taken, busy = run_tx(divisor, data)
    c = cpb(divisor)
    got, starts = decode_line(wave, c)
    assert got == data
    assert wave[:starts[0]] == [1] * starts[0], "line not idle high before the first byte"
    # LSB first: 0x01 has its first data bit high, 0x80 its last.
    s = starts[0]
    assert wave[int(s + 1.5 * c)] == 1 and wave[int(s + 8.5 * c)] == 0
    # No gaps and no drift: each byte starts, and every bit edge of the whole burst lies, within one
    # cycle after its ideal time counted from the first start edge.
    t0 = starts[0]
    for n in range(len(data)):
        late = starts[n] - (t0 + n * 10 * c)
        assert 0 <= late < 1, f"byte {n} starts {late:.3f} cycles after its ideal time"
    transitions = [k for k in range(1, len(wave)) if wave[k] != wave[k - 1]]
    for k in transitions:
        late = k - t0 - round((k - t0) / c) * c
        assert -1e-9 <= late < 1, f"edge at cycle {k} is {late:.3f} cycles off its ideal time"
    # Idle high after the last stop bit, busy low again.
    end = int(t0 + 10 * len(data) * c) + 2
    assert set(wave[end:]) == {1}
    assert busy[-1] == 0 and busy[starts[0]] == 1


def test_tx_random_gaps():
    rng = random.Random(7)
    data = [rng.randrange(256) for _ in range(10)]
    divisor = 133
    # Idle gaps of ~70 cycles on average, against 83 cycles per byte: some bytes follow at once, some
    # after the line has idled.
    wave, taken, busy = run_tx(divisor, data, gap_chance=0.985, seed=3)
    got, starts = decode_line(wave, cpb(divisor))
    assert got == data
    # Each byte starts on the cycle after it is taken.
    assert starts == [t + 1 for t in taken]
    # Every stop bit lasts at least one bit time (nothing is clipped by a quick next byte).
    c = cpb(divisor)
    for a, b in zip(starts, starts[1:]):
        assert b - a >= int(10 * c)


def test_tx_ready_only_when_free():
    """i.ready is high while idle, low mid-byte, and high again on the last cycle of the stop bit."""
    dut = UartTx()
    divisor = 128

    async def tb(ctx):
        ctx.set(dut.divisor, divisor)
        ctx.set(dut.i.valid, 0)
        assert ctx.get(dut.i.ready) == 1            # idle: ready without valid
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 0x3C)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        readies = []
        for _ in range(80):
            readies.append(ctx.get(dut.i.ready))
            await ctx.tick()
        # 10 bits of 8 cycles: first cycle after acceptance is start-bit cycle 1; ready comes back on
        # cycle 80 (the stop bit's last), i.e. index 79.
        assert readies[:79] == [0] * 79 and readies[79] == 1
        assert ctx.get(dut.busy) == 0 and ctx.get(dut.tx) == 1

    sim_run(dut, tb)


# --- receiver --------------------------------------------------------------------------------------------

def run_rx(divisor, wave, *, ready=lambda cycle: 1):
    """Drive UartRx's line with `wave`; collect transferred bytes and the final counters."""
    dut = UartRx()
    got = []
    status = {}

    async def tb(ctx):
        ctx.set(dut.divisor, divisor)
        held = None
        for cycle, level in enumerate(wave):
            ctx.set(dut.rx, level)
            r = ready(cycle)
            ctx.set(dut.o.ready, r)
            if ctx.get(dut.o.valid):
                payload = ctx.get(dut.o.payload)
                if held is not None:
                    assert payload == held, "payload changed while valid and not ready"
                held = payload
                if r:
                    got.append(payload)
                    held = None
            else:
                assert held is None, "valid dropped without a transfer"
            await ctx.tick()
        status["framing_errors"] = ctx.get(dut.framing_errors)
        status["overruns"] = ctx.get(dut.overruns)
        status["busy"] = ctx.get(dut.busy)
        status["valid"] = ctx.get(dut.o.valid)

    sim_run(dut, tb)
    return got, status


@pytest.mark.parametrize("divisor", [64, 128, 267])
@pytest.mark.parametrize("mismatch", [-0.02, 0.0, 0.02])
def test_rx_rates(divisor, mismatch):
    rng = random.Random(divisor * 10 + int(mismatch * 100))
    data = [0x00, 0xFF, 0x55, 0xAA] + [rng.randrange(256) for _ in range(8)]
    # The sender's bit period: a faster sender (+2 % baud) has a shorter period.
    sender_cpb = cpb(divisor) / (1 + mismatch)
    gaps = [rng.choice([0, 0, rng.uniform(0, 30)]) for _ in data]
    wave = line_waveform([frame_bits(b) for b in data], sender_cpb, gaps=gaps,
                         lead=rng.uniform(2, 10))
    got, status = run_rx(divisor, wave, ready=lambda c: (c * 7 + 3) % 5 != 0)
    assert got == data
    assert status == {"framing_errors": 0, "overruns": 0, "busy": 0, "valid": 0}


def test_rx_framing_error_drops_byte():
    divisor = 128
    frames = [frame_bits(0x5A), frame_bits(0x3C, stop=0), frame_bits(0xC3)]
    wave = line_waveform(frames, cpb(divisor), gaps=[0, 20])
    got, status = run_rx(divisor, wave)
    assert got == [0x5A, 0xC3]
    assert status["framing_errors"] == 1 and status["overruns"] == 0


def test_rx_break_counts_once():
    """A line held low for several byte times is one framing error, not a run of zero bytes."""
    divisor = 128
    wave = [1] * 10 + [0] * 400 + [1] * 30
    wave += line_waveform([frame_bits(0x77)], cpb(divisor))
    got, status = run_rx(divisor, wave)
    assert got == [0x77]
    assert status["framing_errors"] == 1


@pytest.mark.parametrize("glitch", [1, 3, 5])
def test_rx_glitch_is_not_a_start(glitch):
    divisor = 256                                   # 16 cycles per bit: half a bit is 8 cycles
    wave = [1] * 10 + [0] * glitch + [1] * 40
    wave += line_waveform([frame_bits(0xE1)], cpb(divisor))
    got, status = run_rx(divisor, wave)
    assert got == [0xE1]
    assert status["framing_errors"] == 0 and status["busy"] == 0


def test_rx_overrun():
    divisor = 128
    data = [0x11, 0x22, 0x33, 0x44]
    wave = line_waveform([frame_bits(b) for b in data], cpb(divisor))
    n = len(wave)
    # Not ready until well after the last byte; then ready: only the first byte survives.
    got, status = run_rx(divisor, wave + [1] * 5, ready=lambda c: c >= n)
    assert got == [0x11]
    assert status["overruns"] == 3 and status["framing_errors"] == 0


def test_rx_counters_wrap():
    """framing_errors is 16 bits and wraps; checked by forcing it near the top."""
    dut = UartRx()
    divisor = 64
    wave = line_waveform([frame_bits(0x00, stop=0)] * 2, cpb(divisor), gaps=[8])

    async def tb(ctx):
        ctx.set(dut.divisor, divisor)
        ctx.set(dut.framing_errors, 0xFFFF)
        await ctx.tick()
        for level in wave:
            ctx.set(dut.rx, level)
            await ctx.tick()
        assert ctx.get(dut.framing_errors) == 1

    sim_run(dut, tb)


# --- both directions -------------------------------------------------------------------------------------

def test_phy_loopback_and_idle():
    """tx looped to rx: bytes come back through the FIFO while the consumer stalls; `idle` tracks it."""
    dut = UartPhy(rx_fifo_depth=4)
    data = [0xDE, 0xAD, 0xBE, 0xEF]
    divisor = 133

    async def tb(ctx):
        ctx.set(dut.divisor, divisor)
        assert ctx.get(dut.idle) == 1
        got = []
        sent = 0
        idle_seen_busy = False
        for cycle in range(int(12 * len(data) * cpb(divisor)) + 100):
            ctx.set(dut.rx, ctx.get(dut.tx))
            ctx.set(dut.i.valid, sent < len(data))
            ctx.set(dut.i.payload, data[sent] if sent < len(data) else 0)
            if sent < len(data) and ctx.get(dut.i.ready):
                sent += 1
            stalled = cycle < 10 * len(data) * cpb(divisor) + 40
            ctx.set(dut.o.ready, not stalled)
            if not stalled and ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))
            if cycle > 5 and cycle < 30:
                idle_seen_busy |= not ctx.get(dut.idle)
            await ctx.tick()
        assert got == data
        assert idle_seen_busy
        assert ctx.get(dut.idle) == 1
        assert ctx.get(dut.overruns) == 0 and ctx.get(dut.framing_errors) == 0

    sim_run(dut, tb)
