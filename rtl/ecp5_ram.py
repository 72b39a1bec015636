"""A simple dual-port memory whose reads are registered: on ECP5, block RAM with its own output register.

`RegisteredMemory` has one write port and any number of read ports. A read takes two cycles: the word at
`r_addr[i]` in cycle t is on `r_data[i]` in cycle t + 2 (the RAM's synchronous read, then a register). A
read of a word written in the same cycle returns the old contents. `r_data` is a register with no logic
after it, so it can feed logic directly; nothing resets it.

Why: Yosys's ECP5 block-RAM mapping leaves the DP16KD output register off (`REGMODE = NOREG`, ≈ 5.8 ns
clock-to-out in nextpnr's model) and a read then needs a fabric register before any logic. With
`REGMODE = OUTREG` the clock-to-out is ≈ 1 ns and the fabric register goes away.

Implementations (`ram`, like the systolic array's `mult`):
- `"ecp5"` (or `"auto"` on a platform with `family == "ecp5"`): DP16KD instances with REGMODE_A/B =
  "OUTREG", port A writing and port B reading, one set of blocks per read port. A block is 512 × 36
  (pseudo-dual-port, DATA_WIDTH 36) up to 512 words, 1024 × 18 up to 1024, 2048 × 9 up to 2048; data is
  cut into 9-bit sub-lanes (8 data bits each when the write has byte granularity, else 9). Deeper
  memories, or granularities that are not whole bytes, use the portable description.
- `"portable"`: `lib.memory.Memory` with synchronous read ports and a fabric register after each.
Both have identical cycle behaviour (sim/test_engine.py runs the DP16KD path against the behavioural model
sim/models/DP16KD.v and compares it with the portable one).
"""

from amaranth import Module, Signal, Const, Cat, ClockSignal, Instance, Shape, Value, unsigned
from amaranth.lib import wiring, data, memory
from amaranth.lib.wiring import In, Out

from .systolic import MULT_MODES, use_ecp5_primitive

__all__ = ["RegisteredMemory", "use_ecp5_ram", "RAM_MODES", "dp16kd_geometry"]

RAM_MODES = MULT_MODES          # the array's multiplier choice, for the same reason

_BLOCK_BITS = 16384          # DP16KD data bits (without parity)
_SUB_LANE = 9                # one byte and its parity bit


def use_ecp5_ram(ram, platform):
    return use_ecp5_primitive(ram, platform, "ram")


def dp16kd_geometry(width, depth, granularity):
    """(data width per block, sub-lane data bits, blocks per read port) of the DP16KD implementation, or
    None when this memory is left to the portable description."""
    if granularity is not None and granularity % 8:
        return None
    for block_width in (36, 18, 9):
        if depth <= _BLOCK_BITS // (block_width // _SUB_LANE * 8):
            bits = 8 if granularity is not None else _SUB_LANE
            sub_lanes = -(-width // bits)
            per_block = block_width // _SUB_LANE
            return block_width, bits, -(-sub_lanes // per_block)
    return None


class RegisteredMemory(wiring.Component):
    """`depth` words of `shape`, one write port (`w_addr`, `w_data`, `w_en`: one bit per `granularity` bits,
    or one bit) and `read_ports` read ports (`r_addr[i]` → `r_data[i]` two cycles later); see the module
    docstring."""

    def __init__(self, *, shape, depth, granularity=None, read_ports=1, ram="auto"):
        shape_width = Shape.cast(shape).width
        if depth < 1:
            raise ValueError(f"depth must be positive, not {depth}")
        if read_ports < 1:
            raise ValueError(f"read_ports must be positive, not {read_ports}")
        if granularity is not None and (granularity < 1 or shape_width % granularity):
            raise ValueError(f"granularity {granularity} must divide the word width {shape_width}")
        use_ecp5_ram(ram, None)
        self.shape, self.depth, self.granularity, self.read_ports, self.ram = (shape, depth, granularity,
                                                                               read_ports, ram)
        self.width = shape_width
        self.lanes = 1 if granularity is None else shape_width // granularity
        abits = max(1, (depth - 1).bit_length())
        super().__init__({
            "w_addr": In(abits),
            "w_data": In(shape),
            "w_en": In(self.lanes),
            "r_addr": In(data.ArrayLayout(unsigned(abits), read_ports)),
            "r_data": Out(data.ArrayLayout(shape, read_ports)),
        })

    def elaborate(self, platform):
        m = Module()
        geometry = dp16kd_geometry(self.width, self.depth, self.granularity)
        if use_ecp5_ram(self.ram, platform) and geometry is not None:
            self._elaborate_dp16kd(m, *geometry)
        else:
            self._elaborate_portable(m)
        return m

    def _elaborate_portable(self, m):
        m.submodules.mem = mem = memory.Memory(shape=self.width, depth=self.depth, init=[])
        wp = mem.write_port(granularity=self.granularity)
        m.d.comb += [wp.addr.eq(self.w_addr), wp.data.eq(self.w_data), wp.en.eq(self.w_en)]
        for i in range(self.read_ports):
            rp = mem.read_port()
            q = Signal(self.width, name=f"r_q{i}", reset_less=True)     # the DP16KD's output register
            m.d.comb += rp.addr.eq(self.r_addr[i])
            m.d.sync += q.eq(rp.data)
            m.d.comb += self.r_data[i].eq(q)

    def _elaborate_dp16kd(self, m, block_width, bits, blocks):
        per_block = block_width // _SUB_LANE
        pdp = block_width == 36
        addr_lsb = {36: 5, 18: 4, 9: 3}[block_width]
        w_bits = Value.cast(self.w_data)
        # Sub-lane s holds data bits [s·bits, (s + 1)·bits) and is written when its lane is enabled.
        sub_lanes = -(-self.width // bits)
        lane_of = (lambda s: 0) if self.granularity is None else (lambda s: s * bits // self.granularity)
        for b in range(blocks):
            subs = range(b * per_block, min((b + 1) * per_block, sub_lanes))
            di = []                                   # block_width input bits, sub-lane by sub-lane
            for s in range(b * per_block, (b + 1) * per_block):
                lo, hi = s * bits, min((s + 1) * bits, self.width)
                piece = w_bits[lo:hi] if s in subs else Const(0, 0)
                di.append(Cat(piece, Const(0, _SUB_LANE - len(piece))))
            di = Cat(*di)
            enables = [self.w_en[lane_of(s)] if s in subs else Const(0, 1) for s in
                       range(b * per_block, (b + 1) * per_block)]
            for r in range(self.read_ports):
                do = Signal(block_width, name=f"do_{r}_{b}")
                ports = {}
                # Address bits below the word are the byte enables of the 36- and 18-bit modes (the write
                # itself is always on); the 9-bit mode has one sub-lane and uses WEA instead.
                high = Const(0, 14 - addr_lsb - len(self.w_addr))
                raddr = Cat(Const(0, addr_lsb), self.r_addr[r], high)
                if block_width == 9:
                    waddr = Cat(Const(0, addr_lsb), self.w_addr, high)
                    we = enables[0]
                else:
                    low = Cat(*enables)
                    waddr = Cat(low, Const(0, addr_lsb - len(low)), self.w_addr, high)
                    we = Const(1, 1)
                dia = Cat(di[:18], Const(0, 18))[:18]
                dib = di[18:36] if pdp else Const(0, 18)
                for k in range(14):
                    ports[f"i_ADA{k}"] = waddr[k]
                    ports[f"i_ADB{k}"] = raddr[k]
                for k in range(18):
                    ports[f"i_DIA{k}"] = dia[k]
                    ports[f"i_DIB{k}"] = dib[k]
                    if pdp:
                        ports[f"o_DOA{k}"] = do[k]
                        ports[f"o_DOB{k}"] = do[18 + k]
                    elif k < block_width:
                        ports[f"o_DOB{k}"] = do[k]
                for port in ("CSA0", "CSA1", "CSA2", "CSB0", "CSB1", "CSB2", "RSTA", "RSTB", "WEB"):
                    ports[f"i_{port}"] = Const(0, 1)
                mode = "NORMAL" if pdp else "READBEFOREWRITE"
                m.submodules[f"ram_{r}_{b}"] = Instance(
                    "DP16KD",
                    p_DATA_WIDTH_A=block_width, p_DATA_WIDTH_B=block_width,
                    p_REGMODE_A="OUTREG", p_REGMODE_B="OUTREG", p_RESETMODE="SYNC",
                    p_CSDECODE_A="0b000", p_CSDECODE_B="0b000", p_WRITEMODE_A=mode, p_WRITEMODE_B=mode,
                    p_GSR="DISABLED",
                    i_CLKA=ClockSignal("sync"), i_CLKB=ClockSignal("sync"),
                    i_CEA=Const(1, 1), i_CEB=Const(1, 1), i_OCEA=Const(1, 1), i_OCEB=Const(1, 1), i_WEA=we,
                    **ports)
                out_bits = Value.cast(self.r_data[r])
                for s in subs:
                    lo, hi = s * bits, min((s + 1) * bits, self.width)
                    at = (s - b * per_block) * _SUB_LANE
                    m.d.comb += out_bits[lo:hi].eq(do[at:at + hi - lo])

