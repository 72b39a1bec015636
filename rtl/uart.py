"""Byte-stream UART (8N1) with a fractional bit-rate divisor: the serial link between host and device.

What it is for
    The host talks to the device over a plain serial line. `UartPhy` turns that line into two byte streams
    (`amaranth.lib.stream`, payload = one byte): `i` is transmitted on `tx`, bytes received on `rx` come out
    of `o`. `UartTx` and `UartRx` are the two directions on their own.

Line format
    8N1, least significant bit first: one start bit (low), eight data bits, one stop bit (high). The line
    idles high.

Bit timing
    The bit period is a runtime input, `divisor`: cycles per bit as an unsigned fixed-point number with
    `DIVISOR_FRAC_BITS` (4) fractional bits in `DIVISOR_BITS` (20) bits, i.e. 4.0 to 65535.9375 cycles per
    bit in steps of 1/16 cycle. Use `divisor_for(clock_hz, baud)` to compute it and `baud_for` to see the
    rate actually obtained; e.g. 3 Mbaud from 25 MHz is 8.3125 cycles/bit (+0.25 %).

    Both directions time bits with a phase accumulator in 1/16-cycle units rather than an integer counter,
    so the fractional part is carried from bit to bit: every bit edge lies less than one clock cycle from
    its ideal position, and the error never builds up across a byte. A transmitter sending back to back
    keeps its accumulator running, so a continuous stream has exactly the nominal average rate.

Guarantees
    - Streams follow the `amaranth.lib.stream` rules: `o.valid` is a register and never depends on
      `o.ready`; `o.payload` holds until transferred; `i` is taken on a cycle where `i.valid & i.ready`.
    - `UartTx` accepts a byte in the last cycle of the previous stop bit, so back-to-back bytes have no gap.
    - `UartRx` passes `rx` through a 2-FF synchronizer (`lib.cdc.FFSynchronizer`), starts on a falling edge,
      confirms the start bit at its middle (a low glitch shorter than about half a bit is ignored), and
      samples every bit by a majority vote of three consecutive cycles centred on the bit's middle. It
      tolerates a sender whose rate differs from the divisor's by ±2 % at every divisor down to 4
      cycles per bit (measured margins: about ±2.5 % at 4 cycles/bit, ±3.5 % at 8, ±5 % at 100).
      A byte whose stop bit is low is dropped and counted in `framing_errors`; a byte that completes while
      the previous one still waits on `o` is dropped and counted in `overruns`. Both counters are 16 bits
      wide and wrap.
    - Latency of `UartRx`: `o.valid` rises 3 to 5 cycles after the middle of the stop bit on the line
      (synchronizer, vote, output register). `UartPhy` puts a `rx_fifo_depth`-byte FIFO after it, which
      adds two cycles; with UartRx's output register the PHY holds rx_fifo_depth + 1 received bytes.

Changing the divisor
    The divisor is sampled continuously. Change it only while the PHY is idle (`UartPhy.idle`, or `busy`
    low on both `UartTx` and `UartRx`); a change mid-byte corrupts that byte, nothing worse. Divisors
    below 4 cycles per bit are outside the specification.
"""

from fractions import Fraction
import math

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import cdc, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DIVISOR_BITS", "DIVISOR_FRAC_BITS", "MIN_CYCLES_PER_BIT", "divisor_for", "baud_for",
           "UartTx", "UartRx", "UartPhy"]

#: Width of the `divisor` input.
DIVISOR_BITS = 20
#: Fractional bits of the divisor: the divisor is cycles per bit times 2**DIVISOR_FRAC_BITS.
DIVISOR_FRAC_BITS = 4
#: Fewest clock cycles per bit the gateware is specified for.
MIN_CYCLES_PER_BIT = 4

_ONE_CYCLE = 1 << DIVISOR_FRAC_BITS            # one clock cycle in divisor units
_MIN_DIVISOR = MIN_CYCLES_PER_BIT * _ONE_CYCLE
_MAX_DIVISOR = (1 << DIVISOR_BITS) - 1


def _exact(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        raise TypeError(f"{what} must be a number, not {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} must be finite, not {value!r}")
    value = Fraction(value)
    if value <= 0:
        raise ValueError(f"{what} must be positive, not {float(value):g}")
    return value


def divisor_for(clock_hz, baud) -> int:
    """The `divisor` value for `baud` at `clock_hz`: cycles per bit × 16, rounded to nearest (half up).

    Raises ValueError if the rate needs fewer than 4 cycles per bit (clock too slow for that baud) or
    more than 65535.9375 (does not fit in `DIVISOR_BITS`)."""
    clock = _exact(clock_hz, "clock_hz")
    rate = _exact(baud, "baud")
    ideal = clock * _ONE_CYCLE / rate
    divisor = math.floor(ideal + Fraction(1, 2))
    cycles = divisor / _ONE_CYCLE
    if divisor < _MIN_DIVISOR:
        raise ValueError(f"{float(rate):g} baud at {float(clock):g} Hz is {float(ideal) / _ONE_CYCLE:.4g} "
                         f"cycles per bit; the UART needs at least {MIN_CYCLES_PER_BIT} "
                         f"(lower the baud rate or raise the clock)")
    if divisor > _MAX_DIVISOR:
        raise ValueError(f"{float(rate):g} baud at {float(clock):g} Hz is {float(cycles):.6g} cycles per "
                         f"bit; the divisor holds at most {_MAX_DIVISOR / _ONE_CYCLE} "
                         f"(raise the baud rate or lower the clock)")
    return divisor


def baud_for(clock_hz, divisor) -> float:
    """The bit rate `divisor` actually gives at `clock_hz` (the inverse of `divisor_for`)."""
    clock = _exact(clock_hz, "clock_hz")
    if isinstance(divisor, bool) or not isinstance(divisor, int):
        raise TypeError(f"divisor must be an integer, not {divisor!r}")
    if divisor <= 0:
        raise ValueError(f"divisor must be positive, not {divisor}")
    return float(clock * _ONE_CYCLE / divisor)


class _BitTimer:
    """Phase accumulator shared by both directions (a helper, not a component).

    Each cycle the phase advances by one cycle (16 units); when it reaches `divisor` a bit period has
    passed: `tick` is asserted for that cycle and `divisor` is subtracted, keeping the remainder.
    `restart(m, phase)` sets the phase instead of advancing it (the caller does this under its own
    conditions); the first tick then comes ceil((divisor - phase) / 16) cycles later.
    """

    def __init__(self, divisor):
        self.divisor = divisor
        self.phase = Signal(DIVISOR_BITS + 1)
        self.tick = Signal()
        self._next = Signal(DIVISOR_BITS + 1)

    def add_to(self, m):
        m.d.comb += [
            self._next.eq(self.phase + _ONE_CYCLE),
            self.tick.eq(self._next >= self.divisor),
        ]

    def advance(self, m):
        with m.If(self.tick):
            m.d.sync += self.phase.eq(self._next - self.divisor)
        with m.Else():
            m.d.sync += self.phase.eq(self._next)

    def restart(self, m, phase):
        m.d.sync += self.phase.eq(phase)


class UartTx(wiring.Component):
    """UART transmitter: bytes from the stream `i` go out on `tx`, 8N1, LSB first.

    Ports
        i : In(stream.Signature(8))  bytes to send; taken when `i.valid & i.ready`.
        divisor : In(DIVISOR_BITS)   cycles per bit × 16 (see `divisor_for`); hold it while `busy`.
        tx : Out(1, init=1)          the serial line, high when idle; driven from a register.
        busy : Out(1)                a byte is on the line (start, data or stop bit).

    `i.ready` is high while idle and in the last cycle of a stop bit, so a waiting byte follows the stop
    bit without a gap. The start bit begins on the cycle after the byte is taken.
    """

    i: In(stream.Signature(8))
    divisor: In(DIVISOR_BITS)
    tx: Out(1, init=1)
    busy: Out(1)

    def elaborate(self, platform):
        m = Module()

        timer = _BitTimer(self.divisor)
        timer.add_to(m)

        shreg = Signal(9)                  # data bits then the stop bit, shifted out LSB first
        bits_left = Signal(range(10))      # bits still to send after the one on the line

        last_tick = Signal()
        m.d.comb += [
            last_tick.eq(self.busy & timer.tick & (bits_left == 0)),
            self.i.ready.eq(~self.busy | last_tick),
        ]

        with m.If(self.busy):
            timer.advance(m)
            with m.If(timer.tick):
                with m.If(bits_left != 0):
                    m.d.sync += [
                        self.tx.eq(shreg[0]),
                        shreg.eq(shreg >> 1),
                        bits_left.eq(bits_left - 1),
                    ]
                with m.Else():
                    m.d.sync += self.busy.eq(0)

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                self.tx.eq(0),                                # start bit
                shreg.eq(Cat(self.i.payload, Const(1, 1))),   # data, then stop bit
                bits_left.eq(9),
                self.busy.eq(1),
            ]
            with m.If(~self.busy):
                # From idle the bit clock starts afresh. Back to back it keeps running: `advance`
                # above has already carried the remainder of the stop bit over.
                timer.restart(m, 0)

        return m


class UartRx(wiring.Component):
    """UART receiver: bytes arriving on `rx` (8N1, LSB first) come out of the stream `o`.

    Ports
        rx : In(1, init=1)           the serial line, asynchronous (synchronized here by two flip-flops).
        divisor : In(DIVISOR_BITS)   cycles per bit × 16 (see `divisor_for`); change it only while idle.
        o : Out(stream.Signature(8)) received bytes. `o.valid` is a register (never depends on `o.ready`);
                                     the payload holds until transferred. One byte of buffering.
        framing_errors : Out(16)     wrapping count of bytes dropped because their stop bit was low.
        overruns : Out(16)           wrapping count of bytes dropped because `o` still held the previous
                                     byte when they completed.
        busy : Out(1)                a byte is being received (from the start edge to mid stop bit).

    A start is a falling edge of the synchronized line; it is confirmed by a majority vote at the middle
    of the start bit, else the receiver goes back to waiting for an edge. After a framing error the line
    must return high before a new start is recognized (a held-low line is not read as a stream of zeros).
    """

    rx: In(1, init=1)
    divisor: In(DIVISOR_BITS)
    o: Out(stream.Signature(8))
    framing_errors: Out(16)
    overruns: Out(16)
    busy: Out(1)

    def elaborate(self, platform):
        m = Module()

        line = Signal(init=1)
        m.submodules.sync = cdc.FFSynchronizer(self.rx, line, init=1, stages=2)

        # The vote is the majority of the last three synchronized samples (this cycle's and the two
        # before it in `history`), so it is centred one cycle back.
        history = Signal(2, init=0b11)
        m.d.sync += history.eq(Cat(line, history[0]))
        a, b, c = line, history[0], history[1]
        vote = Signal()
        m.d.comb += vote.eq((a & b) | (a & c) | (b & c))
        falling = Signal()
        m.d.comb += falling.eq(history[0] & ~line)

        timer = _BitTimer(self.divisor)
        timer.add_to(m)

        shreg = Signal(8)
        bit_index = Signal(range(10))      # 0: start, 1..8: data, 9: stop

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.busy.eq(0)
                with m.If(falling):
                    # Starting the phase at half a bit puts tick k at ceil((k + 0.5) * bit) cycles from
                    # here. The vote is centred one cycle before the tick, and the edge itself happened
                    # up to one cycle before it was seen here, so each vote is centred on its bit's
                    # middle to within half a cycle, on average exactly.
                    timer.restart(m, self.divisor >> 1)
                    m.d.sync += bit_index.eq(0)
                    m.next = "RECEIVE"

            with m.State("RECEIVE"):
                m.d.comb += self.busy.eq(1)
                timer.advance(m)
                with m.If(timer.tick):
                    m.d.sync += bit_index.eq(bit_index + 1)
                    with m.If(bit_index == 0):
                        with m.If(vote):           # a glitch, not a start bit
                            m.next = "IDLE"
                    with m.Elif(bit_index != 9):
                        m.d.sync += shreg.eq(Cat(shreg[1:], vote))
                    with m.Else():
                        m.next = "IDLE"
                        with m.If(~vote):
                            m.d.sync += self.framing_errors.eq(self.framing_errors + 1)
                        with m.Elif(self.o.valid & ~self.o.ready):
                            m.d.sync += self.overruns.eq(self.overruns + 1)
                        with m.Else():
                            m.d.sync += [
                                self.o.payload.eq(shreg),
                                self.o.valid.eq(1),
                            ]

        return m


class UartPhy(wiring.Component):
    """Both directions of a UART with a receive FIFO: the byte-stream endpoint of a serial link.

    Ports
        rx : In(1, init=1)            serial input (asynchronous).
        tx : Out(1, init=1)           serial output, high when idle.
        divisor : In(DIVISOR_BITS)    cycles per bit × 16 for both directions (see `divisor_for`).
                                      Change it only while `idle`.
        i : In(stream.Signature(8))   bytes to transmit.
        o : Out(stream.Signature(8))  bytes received, through a `rx_fifo_depth`-byte FIFO so a briefly
                                      stalled consumer loses nothing.
        framing_errors : Out(16)      see `UartRx`.
        overruns : Out(16)            bytes lost because the receive FIFO was full (see `UartRx`).
        idle : Out(1)                 nothing being sent or received and no received byte waiting.

    Parameters
        rx_fifo_depth : int ≥ 1, default 16.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    divisor: In(DIVISOR_BITS)
    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))
    framing_errors: Out(16)
    overruns: Out(16)
    idle: Out(1)

    def __init__(self, *, rx_fifo_depth=16):
        if isinstance(rx_fifo_depth, bool) or not isinstance(rx_fifo_depth, int):
            raise TypeError(f"rx_fifo_depth must be an integer, not {rx_fifo_depth!r}")
        if rx_fifo_depth < 1:
            raise ValueError(f"rx_fifo_depth must be at least 1, not {rx_fifo_depth}")
        self.rx_fifo_depth = rx_fifo_depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()

        m.submodules.tx = utx = UartTx()
        m.submodules.rx = urx = UartRx()
        m.submodules.rx_fifo = rx_fifo = fifo.SyncFIFOBuffered(width=8, depth=self.rx_fifo_depth)

        m.d.comb += [
            utx.divisor.eq(self.divisor),
            urx.divisor.eq(self.divisor),
            urx.rx.eq(self.rx),
            self.tx.eq(utx.tx),
            self.framing_errors.eq(urx.framing_errors),
            self.overruns.eq(urx.overruns),
            self.idle.eq(~utx.busy & ~urx.busy & ~urx.o.valid & (rx_fifo.level == 0)),
        ]
        wiring.connect(m, wiring.flipped(self.i), utx.i)
        wiring.connect(m, urx.o, rx_fifo.w_stream)
        wiring.connect(m, rx_fifo.r_stream, wiring.flipped(self.o))

        return m
