"""Strided multi-loop address generator: walks the flattened index of one loop role per step.

The generator holds a counter for each of `loops` loops and, for each role (K, M, N), `slots` offsets (one
per operand that role addresses, e.g. M → A, C, D). Each loop i has an extent, a role and per-slot signed
*jumps*: J[i][s] = stride_s(i) − Σ_{inner loops j of the same role} (extent_j − 1)·stride_s(j), computed
once per descriptor by the engine's validator and written through `jump_we`/`jump_addr`/`jump_data` into a
small memory (distributed RAM on FPGAs). One `step` of role r advances the innermost loop of role r that is
not at its last index, restarts the inner loops of role r, and adds that loop's jumps to r's offsets; after
the last position the role wraps to index 0, where its offsets are `origin[r]` (e.g. a base address folded
into one role; 0 otherwise). `restart` returns every role to index 0. Extents and roles must be stable for
two cycles before `restart`, the jumps for one; every role must be restarted before it is stepped.

Outputs describe the current position of the selected role (`sel`) when `valid` is high: `offset[s]`,
`last` (this is the role's last position) and `rem[s]`: how many elements from here on stay contiguous in
slot s (the remaining count of the role's innermost loop with extent > 1 when its jump — its stride — in slot
s is +1, else 1), saturated to `rem_bits`. `step` is only honoured while `valid` is high.

Timing: a step takes two cycles. In the first (`valid` low) the generator decides, from registered state
only, which loop advances next and what `rem` and `last` are; in the second (`valid` high) it adds that
loop's jumps and updates the counters. So no path goes from the counters through the priority choice into
the adders in one cycle. The per-role facts the decision needs (which loops belong to the role, its
innermost loop with extent > 1, whether that loop's stride is +1 per slot) are fixed per descriptor and
registered, and `sel` picks them into one more register stage, so `sel` itself only drives the offset
mux. `valid` drops for a cycle after `restart`, and for two whenever `sel` changes. Counters count down
to 0, "at last index" is a flag and each loop keeps its remaining count saturated to `rem_bits` beside
the counter, so no per-loop comparator or incrementer is on the way.
Extents of 0 never reach the generator (the validator rejects them).
"""

from amaranth import Module, Signal, Cat, Mux, Value, signed, unsigned
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
            "origin": In(data.ArrayLayout(offsets, ROLES)),   # offsets at index 0, per role
            "jump_we": In(1),
            "jump_addr": In(range(loops)),
            "jump_data": In(offsets),
            "sel": In(2),
            "restart": In(1),
            "step": In(1),
            "valid": Out(1),
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

        rem_max = (1 << self.rem_bits) - 1
        RB = self.rem_bits
        ext_m1 = [Signal(EXTENT_BITS, name=f"ext_m1_{i}") for i in range(L)]
        ext_one = Signal(L)                                  # extent 1: the loop is always at its last index
        ext_sat = [Signal(RB, name=f"ext_sat{i}") for i in range(L)]       # min(extent, rem_max)
        down = [Signal(EXTENT_BITS, name=f"down{i}") for i in range(L)]     # extent − 1 − index
        sat = [Signal(RB, name=f"sat{i}") for i in range(L)]               # min(down + 1, rem_max)
        at_last = Signal(L)                                  # down[i] == 0, kept as a flag
        for i in range(L):
            e = self.extent[i]
            m.d.sync += [ext_m1[i].eq(e - 1), ext_one[i].eq(e <= 1), ext_sat[i].eq(_saturate(e, RB))]
        offsets = [[Signal(signed(self.offset_bits), name=f"off_r{r}_s{s}") for s in range(S)]
                   for r in range(ROLES)]

        # Per-role facts, fixed while a descriptor runs (registered from the stable extents and roles): the
        # loops of the role, its innermost loop with extent > 1 (one-hot) and whether that loop's jump is +1
        # in each slot. `sel` picks them into a second register stage, so nothing downstream sees `sel`
        # combinationally; `valid` waits until that stage matches `sel` (one more cycle after `sel` changes).
        mine_r = [Signal(L, name=f"mine_r{r}") for r in range(ROLES)]
        inner_r = [Signal(L, name=f"inner_r{r}") for r in range(ROLES)]
        inner_unit_r = [Signal(S, name=f"inner_unit_r{r}") for r in range(ROLES)]
        for r in range(ROLES):
            is_r = Cat(*(self.role[i] == r for i in range(L)))
            live = Cat(*((self.role[i] == r) & (self.extent[i] > 1) for i in range(L)))
            outer_live = Signal(L + 1, name=f"outer_live{r}")   # some loop j > i of role r has extent > 1
            for i in reversed(range(L)):
                m.d.comb += outer_live[i].eq(outer_live[i + 1] | live[i])
            m.d.sync += [mine_r[r].eq(is_r), inner_r[r].eq(live & ~outer_live[1:])]
            m.d.comb += inner_unit_r[r].eq(
                Cat(*(Cat(*(inner_r[r][i] & unit[i][s] for i in range(L))).any() for s in range(S))))
        sel_q = Signal(2)
        mine = Signal(L)
        inner = Signal(L)
        inner_unit = Signal(S)
        m.d.sync += sel_q.eq(self.sel)
        with m.Switch(self.sel):
            for r in range(ROLES):
                with m.Case(r):
                    m.d.sync += [mine.eq(mine_r[r]), inner.eq(inner_r[r]), inner_unit.eq(inner_unit_r[r])]
            with m.Default():
                m.d.sync += [mine.eq(0), inner.eq(0), inner_unit.eq(0)]

        # ---- decision (registered; `valid` says it matches the current state and `sel`) ----
        decided = Signal()
        decided_sel = Signal(2)
        m.d.comb += self.valid.eq(decided & (decided_sel == self.sel))
        cand = Signal(L)
        m.d.comb += cand.eq(mine & ~at_last)
        above = Signal(L + 1)                               # above[i]: some loop j ≥ i can advance
        for i in reversed(range(L)):
            m.d.comb += above[i].eq(above[i + 1] | cand[i])
        chosen = Signal(range(L))
        chosen_oh = Signal(L)
        reset_mask = Signal(L)                              # loops the step returns to index 0
        can_step = Signal()
        for i in range(L):
            with m.If(cand[i] & ~above[i + 1]):
                m.d.sync += chosen.eq(i)
        m.d.sync += [chosen_oh.eq(cand & ~above[1:]), reset_mask.eq(mine & ~above[:L]),
                     can_step.eq(above[0])]
        m.d.comb += [self.last.eq(~can_step), jr.addr.eq(chosen)]

        # rem: the saturated remaining count of the role's innermost loop with extent > 1 (one-hot AND-OR).
        inner_sat = Signal(RB)
        m.d.comb += inner_sat.eq(_or_all([sat[i] & inner[i].replicate(RB) for i in range(L)]))
        rem = Signal(data.ArrayLayout(unsigned(RB), S))
        m.d.comb += self.rem.eq(rem)
        for s in range(S):
            m.d.sync += rem[s].eq(Mux(inner_unit[s], inner_sat, 1))

        current = Signal(offsets_layout)
        with m.Switch(self.sel):
            for r in range(ROLES):
                with m.Case(r):
                    m.d.comb += [current[s].eq(offsets[r][s]) for s in range(S)]
        m.d.comb += self.offset.eq(current)

        # ---- update ----
        m.d.sync += [decided.eq(1), decided_sel.eq(sel_q)]
        with m.If(self.restart):
            # Every role returns to index 0.
            m.d.sync += decided.eq(0)
            for i in range(L):
                m.d.sync += [down[i].eq(ext_m1[i]), at_last[i].eq(ext_one[i]), sat[i].eq(ext_sat[i])]
            for r in range(ROLES):
                m.d.sync += [offsets[r][s].eq(self.origin[r][s]) for s in range(S)]
        with m.Elif(self.valid & self.step):
            m.d.sync += decided.eq(0)
            for i in range(L):
                with m.If(chosen_oh[i]):
                    m.d.sync += [down[i].eq(down[i] - 1), at_last[i].eq(down[i] == 1),
                                 sat[i].eq(_saturate(down[i], RB))]
                with m.Elif(reset_mask[i]):            # (after the last position: every loop of the role)
                    m.d.sync += [down[i].eq(ext_m1[i]), at_last[i].eq(ext_one[i]), sat[i].eq(ext_sat[i])]
            with m.Switch(self.sel):
                for r in range(ROLES):
                    with m.Case(r):
                        with m.If(can_step):
                            m.d.sync += [offsets[r][s].eq(current[s] + jr.data[s]) for s in range(S)]
                        with m.Else():
                            m.d.sync += [offsets[r][s].eq(self.origin[r][s]) for s in range(S)]
        return m


def _saturate(value, bits):
    """min(value, 2^bits − 1) for an unsigned value: no comparator, an OR of the high bits."""
    value = Value.cast(value)
    if len(value) <= bits:
        return value
    return value[:bits] | value[bits:].any().replicate(bits)


def _or_all(values):
    result = values[0]
    for v in values[1:]:
        result = result | v
    return result


def _unit_bits(jump, slots):
    return Cat(*(jump[s] == 1 for s in range(slots)))
