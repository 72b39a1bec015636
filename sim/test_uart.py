"""UartPhy test bench: cocotb + Verilator, checked against the independent cocotbext-uart bus models.

- Receive: `cocotbext.uart.UartSource` drives `rx` with random bytes, back to back and then in random
  bursts with random idle gaps, at the nominal rate and ±2 % off it; the `o` stream is consumed first
  always ready, then under random backpressure with occasional long stalls that the receive FIFO absorbs.
- Transmit: random bytes go into `i`, first back to back (the burst must take exactly its nominal time),
  then with random idle gaps; `cocotbext.uart.UartSink` decodes `tx`.
- Line errors: a frame with a low stop bit, a break and a short glitch, each followed by a good byte.
- Every test ends by checking that the counters are clean and nothing is left in flight.

The divisor is a runtime input, so one Verilator build (keyed by BUILD_PARAMS only) serves every divisor
and mismatch; those travel to the cocotb side as run_cocotb knobs.

Simulated clock: 50 MHz, so the divisors below are 6.25 Mbaud (8 cycles/bit), 3 Mbaud (16.6875) and
480 kbaud (104.1875).
"""

import json
import logging
import math
import random
import zlib

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time
from cocotbext.uart import UartSink, UartSource

from tensornic.rtl.uart import DIVISOR_FRAC_BITS, UartPhy, divisor_for
from tensornic.sim import verilator

CLOCK_HZ = 50_000_000
CLOCK_NS = 1e9 / CLOCK_HZ
TOP = "uart_phy"
TEST_MODULE = "tensornic.sim.test_uart"
BUILD_PARAMS = {"rx_fifo_depth": 16}

#: Cycles per bit (label) → divisor, at CLOCK_HZ.
DIVISORS = {
    "8": divisor_for(CLOCK_HZ, 6_250_000),
    "16.67": divisor_for(CLOCK_HZ, 3_000_000),
    "104.17": divisor_for(CLOCK_HZ, 480_000),
}


# --- pytest side -----------------------------------------------------------------------------------------

def _run(testcase, **knobs):
    knobs.setdefault("seed", zlib.crc32(json.dumps([testcase, knobs], sort_keys=True).encode()))
    verilator.run_cocotb(lambda: UartPhy(**BUILD_PARAMS), name=TOP, test_module=TEST_MODULE,
                         params=BUILD_PARAMS, knobs=knobs, testcase=testcase, seed=knobs["seed"])


@pytest.mark.parametrize("mismatch", [-0.02, 0.0, 0.02])
@pytest.mark.parametrize("cycles_per_bit", list(DIVISORS))
def test_uart_rx(cycles_per_bit, mismatch):
    _run("rx_traffic", divisor=DIVISORS[cycles_per_bit], mismatch=mismatch)


@pytest.mark.parametrize("cycles_per_bit", list(DIVISORS))
def test_uart_tx(cycles_per_bit):
    _run("tx_traffic", divisor=DIVISORS[cycles_per_bit])


def test_uart_rx_line_errors():
    _run("rx_line_errors", divisor=DIVISORS["16.67"])


# --- cocotb side -----------------------------------------------------------------------------------------

def knobs():
    return verilator.cocotb_params()


def model_baud(bit_ns):
    """The `baud` to give a cocotbext-uart model so that its bit time is `bit_ns` (an integer). The models
    time bits as int(1e9 / baud) ns; the quarter nanosecond keeps float rounding from losing one."""
    return 1e9 / (bit_ns + 0.25)


class TB:
    """Owns the DUT handles, the clock and the bus models: `sink` decodes tx, `source` (once started)
    drives rx, and a consumer task drains the `o` stream into `received`."""

    def __init__(self, dut, params):
        self.dut = dut
        self.log = logging.getLogger("cocotb.tb")
        self.log.setLevel(logging.INFO)
        self.rng = random.Random(params["seed"])
        self.divisor = params["divisor"]
        self.cycles_per_bit = self.divisor / (1 << DIVISOR_FRAC_BITS)
        self.bit_ns = self.cycles_per_bit * CLOCK_NS
        self.log.info("divisor %d: %.4f cycles/bit, %.3f ns/bit", self.divisor, self.cycles_per_bit,
                      self.bit_ns)

        dut.rst.value = 1
        dut.divisor.value = self.divisor
        dut.rx.value = 1
        dut.i__valid.value = 0
        dut.i__payload.value = 0
        dut.o__ready.value = 0
        Clock(dut.clk, CLOCK_NS, unit="ns").start()

        # The models log every byte at INFO; keep the log readable.
        logging.getLogger(f"cocotb.{dut.tx._path}").setLevel(logging.WARNING)
        logging.getLogger(f"cocotb.{dut.rx._path}").setLevel(logging.WARNING)
        self.sink = UartSink(dut.tx, baud=model_baud(round(self.bit_ns)), bits=8)
        self.source = None

        self.expected_counters = (0, 0)
        self.received = []
        self.backpressure = False
        self.stalled = False
        self._stall_left = 0
        cocotb.start_soon(self._consume())

    def start_source(self, mismatch):
        """Attach the UartSource, `mismatch` off the DUT's rate (+0.02: the sender is 2 % faster). Its bit
        time is a whole number of ns, rounded away from nominal so the mismatch is at least as asked."""
        ideal = self.bit_ns / (1 + mismatch)
        if mismatch > 0:
            bit_ns = int(ideal)
        elif mismatch < 0:
            bit_ns = math.ceil(ideal)
        else:
            bit_ns = round(ideal)
        actual = self.bit_ns / bit_ns - 1
        self.log.info("source: %d ns/bit, %+.2f %% off the DUT's rate (asked %+.2f %%)", bit_ns,
                      100 * actual, 100 * mismatch)
        assert abs(actual) >= abs(mismatch) - 0.003, "source rate rounded too far"
        self.source = UartSource(self.dut.rx, baud=model_baud(bit_ns), bits=8)
        self.source_bit_ns = bit_ns

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    # o stream: drained on falling edges (o.valid is a register, so it is stable there).
    def _next_ready(self):
        if self.stalled:
            return 0
        if not self.backpressure:
            return 1
        if self._stall_left:
            self._stall_left -= 1
            return 0
        # About one stall per 30 bytes, each up to 12 byte times: within what the 16-byte FIFO holds.
        if self.rng.random() < 1 / (30 * 10 * self.cycles_per_bit):
            self._stall_left = self.rng.randrange(1, int(12 * 10 * self.cycles_per_bit))
            return 0
        return int(self.rng.random() < 0.5)

    async def _consume(self):
        dut = self.dut
        held = None
        while True:
            await FallingEdge(dut.clk)
            ready = self._next_ready()
            dut.o__ready.value = ready
            if int(dut.o__valid.value):
                payload = int(dut.o__payload.value)
                assert held is None or payload == held, "o.payload changed before it was taken"
                if ready:
                    self.received.append(payload)
                    held = None
                else:
                    held = payload
            else:
                assert held is None, "o.valid fell before the byte was taken"

    # i stream: driven on falling edges; a byte is taken at the rising edge after a cycle with valid&ready.
    async def send(self, data, *, gaps):
        """Offer `data` on `i`; with `gaps`, idle a random time (sometimes longer than a byte) before each
        byte. Returns the sim time (ns) of the first transfer."""
        dut = self.dut
        first = None
        await FallingEdge(dut.clk)
        for byte in data:
            if gaps and self.rng.random() < 0.6:
                dut.i__valid.value = 0
                await ClockCycles(dut.clk, self.rng.randrange(1, int(15 * self.cycles_per_bit)),
                                  FallingEdge)
            dut.i__valid.value = 1
            dut.i__payload.value = byte
            while True:
                await ReadOnly()
                taken = int(dut.i__ready.value)
                await FallingEdge(dut.clk)
                if taken:
                    break
            if first is None:
                first = get_sim_time("ns") - CLOCK_NS / 2
        dut.i__valid.value = 0
        return first

    async def source_traffic(self, data, *, gaps):
        """Send `data` through the UartSource: back to back, or in bursts of 1–4 bytes with random gaps."""
        k = 0
        while k < len(data):
            burst = self.rng.randint(1, 4) if gaps else len(data)
            await self.source.write(data[k:k + burst])
            k += burst
            await self.source.wait()
            if gaps and self.rng.random() < 0.7:
                await Timer(self.rng.randrange(1, int(3 * self.source_bit_ns)), unit="ns")

    async def until(self, condition, what, *, bits):
        """Wait until `condition()` holds, checking every few cycles, for at most `bits` bit times.
        `what` (a string, or a function returning one) names what was awaited in the failure message."""
        step = 8
        for _ in range(int(bits * self.cycles_per_bit / step) + 2):
            if condition():
                return
            await ClockCycles(self.dut.clk, step)
        assert condition(), f"timed out after {bits} bit times waiting for {what() if callable(what) else what}"

    async def drive_frame(self, levels):
        """Drive dut.rx by hand with `levels`, one per DUT bit time, then leave it high."""
        for level in levels:
            self.dut.rx.value = level
            await Timer(round(self.bit_ns * 1000), unit="ps")
        self.dut.rx.value = 1

    def counters(self):
        return int(self.dut.framing_errors.value), int(self.dut.overruns.value)

    async def check_quiet(self):
        """Nothing in flight: the line models idle and empty, the DUT idle with no byte waiting."""
        await self.until(lambda: int(self.dut.idle.value), "the PHY to go idle", bits=20)
        await ClockCycles(self.dut.clk, int(2 * self.cycles_per_bit))
        assert self.sink.empty() and self.sink.idle(), f"tx sink holds {self.sink.count()} stray bytes"
        if self.source is not None:
            assert self.source.idle()
        assert int(self.dut.idle.value) == 1
        assert int(self.dut.o__valid.value) == 0
        assert int(self.dut.i__ready.value) == 1
        assert int(self.dut.tx.value) == 1
        assert self.counters() == self.expected_counters, \
            f"framing_errors, overruns = {self.counters()}, expected {self.expected_counters}"


def random_bytes(rng, n):
    # Lead with the patterns most likely to show bit-order or edge-placement faults.
    return ([0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80] + [rng.randrange(256) for _ in range(n)])[:n]


def byte_count(cycles_per_bit):
    """Bytes per phase: about 12k cycles' worth, between 16 and 64."""
    return max(16, min(64, int(12_000 / (10 * cycles_per_bit))))


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def rx_traffic(dut):
    params = knobs()
    tb = TB(dut, params)
    tb.start_source(params["mismatch"])
    await tb.reset()
    n = byte_count(tb.cycles_per_bit)

    for phase, gaps in (("back to back, always ready", False), ("gaps and backpressure", True)):
        tb.log.info("rx phase: %s", phase)
        tb.received.clear()
        tb.backpressure = gaps
        data = random_bytes(tb.rng, n)
        await tb.source_traffic(data, gaps=gaps)
        await tb.until(lambda: len(tb.received) >= len(data),
                       lambda: f"{len(data)} bytes on o (got {len(tb.received)}, framing errors and "
                               f"overruns {tb.counters()})", bits=40 + 15 * n)
        tb.backpressure = False
        assert tb.received == data, f"received {bytes(tb.received).hex()} expected {bytes(data).hex()}"
        assert tb.counters() == (0, 0), "framing errors / overruns on good traffic"

    # The consumer stalls while a burst arrives: the FIFO and UartRx's output register hold exactly
    # rx_fifo_depth + 1 bytes; two more are overruns, counted and dropped.
    capacity = params["rx_fifo_depth"] + 1
    for phase, extra in (("stalled consumer, burst that fits", 0), ("stalled consumer, overflow", 2)):
        tb.log.info("rx phase: %s", phase)
        tb.received.clear()
        tb.stalled = True
        data = random_bytes(tb.rng, capacity + extra)
        await tb.source_traffic(data, gaps=False)
        await ClockCycles(dut.clk, int(2 * tb.cycles_per_bit))
        assert tb.counters() == (0, extra), f"framing errors and overruns {tb.counters()}"
        tb.stalled = False
        await tb.until(lambda: len(tb.received) >= capacity, f"{capacity} bytes on o", bits=10)
        await ClockCycles(dut.clk, 8)
        assert tb.received == data[:capacity], f"got {bytes(tb.received).hex()} after the stall"
        assert int(dut.o__valid.value) == 0
    tb.expected_counters = (0, 2)

    await tb.check_quiet()


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def tx_traffic(dut):
    params = knobs()
    tb = TB(dut, params)
    await tb.reset()
    n = byte_count(tb.cycles_per_bit)

    for phase, gaps in (("back to back", False), ("random gaps", True)):
        tb.log.info("tx phase: %s", phase)
        data = random_bytes(tb.rng, n)
        first = await tb.send(data, gaps=gaps)
        if not int(dut.idle.value):
            await RisingEdge(dut.idle)      # exact time the last stop bit ends
        done = get_sim_time("ns")
        await tb.until(lambda: tb.sink.count() >= len(data), f"{len(data)} bytes at the sink", bits=20)
        got = list(tb.sink.read_nowait(len(data)))
        assert got == data, f"sink got {bytes(got).hex()} expected {bytes(data).hex()}"
        if not gaps:
            # Back to back: no gap between frames and no drift across the burst.
            ideal = len(data) * 10 * tb.bit_ns
            assert abs((done - first) - ideal) <= 3 * CLOCK_NS, \
                f"burst took {done - first:.1f} ns, nominal {ideal:.1f} ns"

    await tb.check_quiet()


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def rx_line_errors(dut):
    params = knobs()
    tb = TB(dut, params)
    tb.start_source(0.0)
    await tb.reset()
    received = []

    async def good_byte(value):
        await tb.source.write([value])
        await tb.source.wait()
        await tb.until(lambda: len(tb.received) >= len(received) + 1, f"byte {value:#04x}", bits=20)
        received.append(value)
        assert tb.received == received

    def frame(value, stop):
        return [0] + [(value >> k) & 1 for k in range(8)] + [stop]

    await good_byte(0x5A)

    tb.log.info("a frame with a low stop bit")
    await tb.drive_frame(frame(0x3C, stop=0) + [1])
    await tb.until(lambda: tb.counters()[0] == 1, "framing_errors to count the bad frame", bits=5)
    await good_byte(0xC3)

    tb.log.info("a break: the line low for three frames")
    await tb.drive_frame([0] * 30 + [1])
    await tb.until(lambda: tb.counters()[0] == 2, "framing_errors to count the break", bits=5)
    await good_byte(0x96)

    tb.log.info("a glitch of a quarter bit")
    dut.rx.value = 0
    await Timer(round(tb.bit_ns * 250), unit="ps")
    dut.rx.value = 1
    await ClockCycles(dut.clk, int(3 * tb.cycles_per_bit))
    assert tb.counters() == (2, 0) and int(dut.idle.value) == 1, "a glitch was taken for a start bit"
    await good_byte(0x69)

    assert tb.received == [0x5A, 0xC3, 0x96, 0x69]
    tb.expected_counters = (2, 0)
    await tb.check_quiet()
