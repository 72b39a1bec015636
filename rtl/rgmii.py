"""RGMII adapter: a GMII-style byte interface (8 bits per clock at 125 MHz) on an RGMII PHY's 4-bit DDR pins.

RGMII at 1 Gb/s carries one byte per 125 MHz clock on 4 data pins and one control pin, both edges:
- rising edge: data[3:0] and EN (TX) / DV (RX);
- falling edge: data[7:4] and EN xor ER / DV xor ER.

Transmit runs in the `sync` domain (the local 125 MHz clock, which is also `tx_clk`). Receive runs in the
PHY's `rx_clk`; a small elastic buffer (`lib.fifo.AsyncFIFO`) carries received bytes into `sync`, so the
GMII side of the adapter is in one clock domain. The buffer holds back the start of each frame until
`RX_PRIME` bytes are in it: with the ±100 ppm clocks Ethernet allows, a 9000-byte frame drifts by under two
bytes, so the read side never runs dry inside a frame; if it does (a clock far off), the byte is sent with
`rx_er` so the frame is dropped downstream, never silently altered. The inter-frame gap absorbs the drift.

Clock skew: RGMII needs ~2 ns between clock and data. By default this adapter drives `tx_clk` in phase with
the data (from the `sync` clock) and expects centre-aligned receive data, i.e. a PHY with internal TX and RX
delays ("RGMII-ID"). A board whose PHY does not delay its transmit clock passes `tx_clk_domain`: a copy of
the `sync` clock lagging by the wanted delay (the ECPIX-5: a PLL output 90° = 2 ns late), which then clocks
the `tx_clk` DDR register alone, so the clock edge reaches the pin 2 ns after the data changed. Receive
data must arrive centre-aligned (the PHY's RX delay, or the PCB); see docs/boards.md.

DDR pins: with `pins=None` (simulation, Verilator) the adapter models the DDR registers behaviourally and
exposes the pins as ports; on a board, `pins` holds the platform's RGMII resource ports and the adapter
uses `amaranth.lib.io.DDRBuffer` (ODDRX1F/IDDRX1F on ECP5). Both paths present the same (i[0], i[1]) /
(o[0], o[1]) pairs to the logic, with the semantics of `io.DDRBuffer` (and of the ECP5's IDDRX1F/ODDRX1F):
o[0] goes out at the rising edge, o[1] half a cycle later; i[0] is the sample taken at a rising edge and
i[1] the one taken at the falling edge after it, both presented together one cycle later. An RGMII byte is
therefore one (i[0], i[1]) pair: low nibble and DV at the rising edge, high nibble and DV ^ ER at the
falling edge after it.
"""

from amaranth import ClockDomain, ClockSignal, Module, Mux, Signal
from amaranth.hdl import IOPort
from amaranth.lib import fifo, io, wiring
from amaranth.lib.wiring import In, Out

from .ethernet import GmiiSignature

__all__ = ["RgmiiAdapter", "RX_PRIME", "RX_BUFFER_DEPTH"]

#: Bytes buffered before a received frame is passed on (see the module docstring).
RX_PRIME = 4
#: Depth of the receive elastic buffer.
RX_BUFFER_DEPTH = 16


class RgmiiAdapter(wiring.Component):
    """GMII (sync domain, 125 MHz) ↔ RGMII pins.

    pins: None (behavioural DDR, pins as ports) or an object with io ports `txd` (4), `tx_ctl`, `tx_clk`,
    `rxd` (4), `rx_ctl`, `rx_clk` (e.g. an amaranth-boards RGMII resource requested with `dir="-"`; its
    names `tx_data`, `tx_ctrl`, `rx_data`, `rx_ctrl` are accepted as well).
    tx_clk_domain: the domain whose clock drives the `tx_clk` pin (see the module docstring); only with pins.
    rx_clk_hz: the receive clock's frequency, given to the platform as a timing constraint (pins only).
    """

    #: Alternative names of the pins (amaranth-boards' `eth_rgmii` resources).
    PIN_ALIASES = {"txd": "tx_data", "tx_ctl": "tx_ctrl", "rxd": "rx_data", "rx_ctl": "rx_ctrl"}

    def __init__(self, pins=None, *, tx_clk_domain="sync", rx_clk_hz=125_000_000):
        if pins is None and tx_clk_domain != "sync":
            raise ValueError("tx_clk_domain applies to the DDR output buffer of a board's pins; the "
                             "behavioural model (pins=None) drives tx_clk from sync")
        self._pins = pins
        self.tx_clk_domain = tx_clk_domain
        self.rx_clk_hz = rx_clk_hz
        members = {
            "gmii_tx": In(GmiiSignature()),     # from the MAC: what goes out on the wire
            "gmii_rx": Out(GmiiSignature()),    # to the MAC: what came in
            "rx_overflows": Out(16),    # bytes lost because the elastic buffer was full (a far-off clock)
            "rx_underruns": Out(16),    # bytes the buffer could not supply inside a frame (sent with rx_er)
        }
        if pins is None:
            members.update({
                "txd": Out(4), "tx_ctl": Out(1), "tx_clk": Out(1),
                "rxd": In(4), "rx_ctl": In(1), "rx_clk": In(1),
            })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.domains.rgmii_rx = ClockDomain(reset_less=True)

        # DDR pairs, io.DDRBuffer semantics (see the module docstring).
        tx_d, tx_ctl, tx_clk = [Signal(4), Signal(4)], [Signal(), Signal()], [Signal(), Signal()]
        rx_d, rx_ctl = [Signal(4), Signal(4)], [Signal(), Signal()]

        if self._pins is None:
            m.d.comb += ClockSignal("rgmii_rx").eq(self.rx_clk)
            self._behavioural_ddr(m, tx_d, tx_ctl, tx_clk, rx_d, rx_ctl)
        else:
            pin = self._pin
            m.submodules.rx_clk_buf = rx_clk_buf = io.Buffer("i", pin("rx_clk"))
            m.d.comb += ClockSignal("rgmii_rx").eq(rx_clk_buf.i)
            if platform is not None:
                # On the pin (FREQUENCY PORT): a net name inside the design may not survive synthesis.
                port = getattr(pin("rx_clk"), "io", None)
                platform.add_clock_constraint(port if isinstance(port, IOPort) else rx_clk_buf.i,
                                              self.rx_clk_hz)
            for name, pair, domain in (("txd", tx_d, "sync"), ("tx_ctl", tx_ctl, "sync"),
                                       ("tx_clk", tx_clk, self.tx_clk_domain)):
                buf = m.submodules[f"{name}_ddr"] = io.DDRBuffer("o", pin(name), o_domain=domain)
                m.d.comb += [buf.o[0].eq(pair[0]), buf.o[1].eq(pair[1])]
            for name, pair in (("rxd", rx_d), ("rx_ctl", rx_ctl)):
                port = pin(name)
                buf = m.submodules[f"{name}_ddr"] = io.DDRBuffer("i", port, i_domain="rgmii_rx")
                m.d.comb += [pair[0].eq(buf.i[0]), pair[1].eq(buf.i[1])]

        # Transmit: low nibble and EN at the rising edge, high nibble and EN ^ ER at the falling edge.
        m.d.comb += [
            tx_d[0].eq(self.gmii_tx.data[:4]), tx_d[1].eq(self.gmii_tx.data[4:]),
            tx_ctl[0].eq(self.gmii_tx.en), tx_ctl[1].eq(self.gmii_tx.en ^ self.gmii_tx.er),
            tx_clk[0].eq(1), tx_clk[1].eq(0),
        ]

        # Receive: a byte is the rising-edge sample (low nibble, DV) and the falling-edge sample after it,
        # which io.DDRBuffer presents together as i[0] and i[1].
        dv, byte, er = Signal(), Signal(8), Signal()
        m.d.comb += [dv.eq(rx_ctl[0]), byte.eq(rx_d[1] << 4 | rx_d[0]), er.eq(rx_ctl[0] ^ rx_ctl[1])]

        # Elastic buffer: entries are (end, er, byte); `end` marks the first idle cycle after a frame.
        m.submodules.rx_buffer = buf = fifo.AsyncFIFO(width=10, depth=RX_BUFFER_DEPTH,
                                                      w_domain="rgmii_rx", r_domain="sync")
        in_frame = Signal()
        m.d.rgmii_rx += in_frame.eq(dv)
        overflows = Signal(16)
        m.d.comb += [
            buf.w_data.eq(Mux(dv, er << 8 | byte, 1 << 9)),
            buf.w_en.eq(dv | in_frame),
        ]
        with m.If(buf.w_en & ~buf.w_rdy & (overflows != 0xFFFF)):
            m.d.rgmii_rx += overflows.eq(overflows + 1)
        # The counter lives in the receive domain; a multi-bit count crosses by a Gray-free slow path:
        # it is only read by software long after it settles, so sample it twice and keep equal values.
        ov_a, ov_b = Signal(16), Signal(16)
        m.d.sync += [ov_a.eq(overflows), ov_b.eq(ov_a)]
        with m.If(ov_a == ov_b):
            m.d.sync += self.rx_overflows.eq(ov_b)

        sending = Signal()
        with m.If(~sending):
            m.d.comb += buf.r_en.eq(buf.r_rdy & buf.r_data[9])          # drop stray end markers
            with m.If(buf.r_level >= RX_PRIME):
                m.d.sync += sending.eq(1)
        m.d.sync += [self.gmii_rx.en.eq(0), self.gmii_rx.er.eq(0)]
        with m.If(sending):
            m.d.comb += buf.r_en.eq(1)
            with m.If(~buf.r_rdy):                                      # ran dry inside a frame
                m.d.sync += [self.gmii_rx.en.eq(1), self.gmii_rx.er.eq(1)]
                with m.If(self.rx_underruns != 0xFFFF):
                    m.d.sync += self.rx_underruns.eq(self.rx_underruns + 1)
            with m.Elif(buf.r_data[9]):
                m.d.sync += sending.eq(0)
            with m.Else():
                m.d.sync += [self.gmii_rx.data.eq(buf.r_data[:8]), self.gmii_rx.en.eq(1),
                             self.gmii_rx.er.eq(buf.r_data[8])]
        return m

    def _pin(self, name):
        pins = self._pins
        if hasattr(pins, name):
            return getattr(pins, name)
        if name in self.PIN_ALIASES and hasattr(pins, self.PIN_ALIASES[name]):
            return getattr(pins, self.PIN_ALIASES[name])
        raise AttributeError(f"the RGMII pins have no {name!r}"
                             + (f" or {self.PIN_ALIASES[name]!r}" if name in self.PIN_ALIASES else ""))

    def _behavioural_ddr(self, m, tx_d, tx_ctl, tx_clk, rx_d, rx_ctl):
        """DDR registers for simulation, with io.DDRBuffer's pairing and a latency of one cycle (as the
        ECP5's ODDRX1F/IDDRX1F)."""
        m.domains.sync_fall = ClockDomain(clk_edge="neg", reset_less=True)
        m.domains.rgmii_rx_fall = ClockDomain(clk_edge="neg", reset_less=True)
        m.d.comb += [ClockSignal("sync_fall").eq(ClockSignal("sync")),
                     ClockSignal("rgmii_rx_fall").eq(ClockSignal("rgmii_rx"))]
        for pair, pin, width in ((tx_d, self.txd, 4), (tx_ctl, self.tx_ctl, 1), (tx_clk, self.tx_clk, 1)):
            rise, second, fall = Signal(width), Signal(width), Signal(width)
            m.d.sync += [rise.eq(pair[0]), second.eq(pair[1])]
            m.d.sync_fall += fall.eq(second)
            m.d.comb += pin.eq(Mux(ClockSignal("sync"), rise, fall))
        for pair, pin, width in ((rx_d, self.rxd, 4), (rx_ctl, self.rx_ctl, 1)):
            # IDDRX1F: sample at the rising and at the following falling edge, present both at the next
            # rising edge.
            rise, fall = Signal(width), Signal(width)
            m.d.rgmii_rx += rise.eq(pin)
            m.d.rgmii_rx_fall += fall.eq(pin)
            m.d.rgmii_rx += [pair[0].eq(rise), pair[1].eq(fall)]
