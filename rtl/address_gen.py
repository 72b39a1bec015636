"""Strided multi-loop address generator: walks the flattened index of one loop role per step.

The generator holds a counter for each of `loops` loops and, for each role (K, M, N), `slots` offsets (one
per operand that role addresses, e.g. M → A, C, D). Each loop i has an extent, a role and per-slot signed
*jumps*: J[i][s] = stride_s(i) − Σ_{inner loops j of the same role} (extent_j − 1)·stride_s(j), computed
once per descriptor by the engine's validator and written through `jump_we`/`jump_addr`/`jump_data` into a
small memory (distributed RAM on FPGAs). One `step` of role r advances the innermost loop of role r that is
not at its last index, restarts the inner loops of role r, and adds that loop's jumps to r's offsets; after
the last position the role wraps to index 0 (offsets 0). `restart` returns role r to index 0. Extents must
be set (and stable) for a cycle before `restart`; every role must be restarted once before it is stepped.

Outputs describe the current position of the selected role (`sel`) combinationally: `offset[s]`, `last`
(this is the role's last position) and `rem[s]`: how many elements from here on stay contiguous in slot s
(the remaining count of the role's innermost loop with extent > 1 when its jump — its stride — in slot s is
+1, else 1), saturated to `rem_bits`. Extents of 0 never reach the generator (the validator rejects them).
Counters count down to 0, so "last" is a zero test and no per-loop comparator is needed.
"""

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import wiring, data, memory
from amaranth.lib.wiring import In, Out

from .contraction_format import EXTENT_BITS

__all__ = ["AddressGenerator"]

ROLES = 3


class AddressGenerator(wiring.Component):
    def __init__(self, loops=8, slots=3, offset_bits=24, rem_bits=9):
        if loops < 1 or slots < 1:
            raise ValueError(f"need at least one loop and one slot, not loops={loops}, slots={slots}")
        self.loops, self.slots, self.offset_bits, self.rem_bits = loops, slots, offset_bits, rem_bits
        offsets = data.ArrayLayout(signed(offset_bits), slots)
        super().__init__({
            "extent": In(data.ArrayLayout(unsigned(EXTENT_BITS), loops)),
            "role": In(data.ArrayLayout(unsigned(2), loops)),
            "jump_we": In(1),
            "jump_addr": In(range(loops)),
            "jump_data": In(offsets),
            "sel": In(2),
            "restart": In(1),
            "step": In(1),
            "offset": Out(offsets),
            "rem": Out(data.ArrayLayout(unsigned(rem_bits), slots)),
            "last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        L, S = self.loops, self.slots
        offsets_layout = data.ArrayLayout(signed(self.offset_bits), S)
        m.submodules.jumps = jumps = memory.Memory(shape=offsets_layout, depth=L, init=[])
        jw = jumps.write_port()
        jr = jumps.read_port(domain="comb")
        m.d.comb += [jw.addr.eq(self.jump_addr), jw.data.eq(self.jump_data), jw.en.eq(self.jump_we)]
        unit = [Signal(S, name=f"unit{i}") for i in range(L)]      # jump of loop i in slot s is +1
        with m.If(self.jump_we):
            with m.Switch(self.jump_addr):
                for i in range(L):
                    with m.Case(i):
                        m.d.sync += unit[i].eq(_unit_bits(self.jump_data, S))

        ext_m1 = [Signal(EXTENT_BITS, name=f"ext_m1_{i}") for i in range(L)]
        down = [Signal(EXTENT_BITS, name=f"down{i}") for i in range(L)]     # extent − 1 − index
        for i in range(L):
            m.d.sync += ext_m1[i].eq(self.extent[i] - 1)
        offsets = [[Signal(signed(self.offset_bits), name=f"off_r{r}_s{s}") for s in range(S)]
                   for r in range(ROLES)]
        at_last = Signal(L)
        mine = Signal(L)
        for i in range(L):
            m.d.comb += [at_last[i].eq(down[i] == 0), mine[i].eq(self.role[i] == self.sel)]

        # Innermost loop of the role that can still advance, and innermost loop of the role with extent > 1.
        chosen = Signal(range(L))
        can_step = Signal()
        inner = Signal(range(L))
        has_inner = Signal()
        for i in range(L):
            with m.If(mine[i] & ~at_last[i]):
                m.d.comb += [chosen.eq(i), can_step.eq(1)]
            with m.If(mine[i] & (ext_m1[i] != 0)):
                m.d.comb += [inner.eq(i), has_inner.eq(1)]
        m.d.comb += [self.last.eq(~can_step), jr.addr.eq(chosen)]

        current = Signal(offsets_layout)
        with m.Switch(self.sel):
            for r in range(ROLES):
                with m.Case(r):
                    m.d.comb += [current[s].eq(offsets[r][s]) for s in range(S)]
        m.d.comb += self.offset.eq(current)
        advanced = Signal(offsets_layout)
        m.d.comb += [advanced[s].eq(current[s] + jr.data[s]) for s in range(S)]

        rem_max = (1 << self.rem_bits) - 1
        inner_down = Signal(EXTENT_BITS)
        inner_unit = Signal(S)
        with m.Switch(inner):
            for i in range(L):
                with m.Case(i):
                    m.d.comb += [inner_down.eq(down[i]), inner_unit.eq(unit[i])]
        remaining = Signal(EXTENT_BITS + 1)
        m.d.comb += remaining.eq(inner_down + 1)
        for s in range(S):
            with m.If(has_inner & inner_unit[s]):
                with m.If(remaining < rem_max):
                    m.d.comb += self.rem[s].eq(remaining)
                with m.Else():
                    m.d.comb += self.rem[s].eq(rem_max)
            with m.Else():
                m.d.comb += self.rem[s].eq(1)

        with m.If(self.restart | (self.step & ~can_step)):
            for i in range(L):
                with m.If(mine[i]):
                    m.d.sync += down[i].eq(ext_m1[i])
            with m.Switch(self.sel):
                for r in range(ROLES):
                    with m.Case(r):
                        m.d.sync += [offsets[r][s].eq(0) for s in range(S)]
        with m.Elif(self.step):
            for i in range(L):
                with m.If(mine[i]):
                    with m.If(chosen == i):
                        m.d.sync += down[i].eq(down[i] - 1)
                    with m.Elif(chosen < i):
                        m.d.sync += down[i].eq(ext_m1[i])
            with m.Switch(self.sel):
                for r in range(ROLES):
                    with m.Case(r):
                        m.d.sync += [offsets[r][s].eq(advanced[s]) for s in range(S)]
        return m


def _unit_bits(jump, slots):
    from amaranth import Cat
    return Cat(*(jump[s] == 1 for s in range(slots)))
