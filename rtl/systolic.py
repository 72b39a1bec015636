"""Output-stationary systolic array of signed integer multiply-accumulate cells.

Cell (i, j) sees A[i, k] and B[k, j] at cycle k + i + j after the array's edge (the array skews its inputs
itself) and adds their product into a free-running accumulator of `acc_width` bits that wraps modulo
2^acc_width (two's complement; 32 bits by default). Accumulators are never cleared: a `first` token that
travels with A marks the start of a new interval (an output tile or an idle gap); when it reaches a cell,
the cell copies its accumulator (before adding the new product) into a shadow register. The drain reads the
shadows column by column, and the consumer subtracts each cell's previous shadow value: the difference is
exactly the interval's sum modulo 2^acc_width. This keeps the cell to one adder and no clear logic.

Timing: cell latency 3 (input register, multiplier output register, accumulator); shadows of column j
stream out on `out_data[j]`/`out_valid[j]`, rows 0…R-1 on consecutive cycles, starting `R + j + 3` cycles
after the interval's `first` entered the array. Intervals must last at least R cycles (the feeder pads).

Multipliers: on ECP5 (`platform.family == "ecp5"`, or `mult="ecp5"`) each cell instantiates MULT18X18D
with its input and output registers enabled (REG_INPUTA/B_CLK, REG_OUTPUT_CLK = CLK0); Yosys would leave
them off. Elsewhere the same two register stages are described portably. Both have identical cycle timing
(tested in sim/test_engine.py with a behavioural MULT18X18D model).
"""

from amaranth import Module, Signal, Const, ClockSignal, Instance, signed, unsigned
from amaranth.lib import wiring, data
from amaranth.lib.wiring import In, Out

__all__ = ["MacCell", "SystolicArray", "CELL_LATENCY"]

#: Cycles from a cell's inputs to the accumulator update that includes their product.
CELL_LATENCY = 3
MULT_MODES = ("auto", "portable", "ecp5")


def check_cell_parameters(width, acc_width, mult):
    if width not in (8, 16):
        raise ValueError(f"width must be 8 or 16, not {width}")
    if not 2 * width <= acc_width <= 48:
        raise ValueError(f"acc_width must be in {2 * width}…48, not {acc_width}")
    use_ecp5_dsp(mult, None)


def use_ecp5_primitive(mode, platform, name="mult"):
    """Whether an "auto" | "portable" | "ecp5" choice (`name` in messages) means the ECP5 primitive on
    `platform`: "auto" follows the platform's family."""
    if mode not in MULT_MODES:
        raise ValueError(f"{name} must be one of {MULT_MODES}, not {mode!r}")
    if mode == "auto":
        return getattr(platform, "family", None) == "ecp5"
    return mode == "ecp5"


def use_ecp5_dsp(mult, platform):
    return use_ecp5_primitive(mult, platform, "mult")


class MacCell(wiring.Component):
    """One multiply-accumulate cell. Inputs pass on to the right (A, first) and down (B) one cycle later."""

    def __init__(self, width=8, acc_width=32, mult="auto"):
        check_cell_parameters(width, acc_width, mult)
        self.width, self.acc_width, self.mult = width, acc_width, mult
        super().__init__({
            "a_in": In(signed(width)), "b_in": In(signed(width)), "first_in": In(1),
            "a_out": Out(signed(width)), "b_out": Out(signed(width)), "first_out": Out(1),
            "acc": Out(unsigned(acc_width)),
            "shadow": Out(unsigned(acc_width)),
            "capture": Out(1),      # high in the cycle at whose end `shadow` takes `acc`
        })

    def elaborate(self, platform):
        m = Module()
        w = self.width
        # Data registers are not reset (neither by `rst` nor by an inserted abort): they need no initial
        # value, and a reset net into thousands of flip-flops would be the slowest path of the engine.
        a_reg = Signal(signed(w), reset_less=True)
        b_reg = Signal(signed(w), reset_less=True)
        acc = Signal(self.acc_width, reset_less=True)
        shadow = Signal(self.acc_width, reset_less=True)
        m.d.sync += [a_reg.eq(self.a_in), b_reg.eq(self.b_in), self.first_out.eq(self.first_in)]
        m.d.comb += [self.a_out.eq(a_reg), self.b_out.eq(b_reg), self.acc.eq(acc), self.shadow.eq(shadow)]
        first_d2 = Signal()
        m.d.sync += first_d2.eq(self.first_out)
        product = Signal(signed(2 * w), reset_less=True)
        if use_ecp5_dsp(self.mult, platform):
            p = Signal(36)
            a18 = Signal(signed(18))
            b18 = Signal(signed(18))
            m.d.comb += [a18.eq(self.a_in), b18.eq(self.b_in)]
            # Unused inputs (C, SRIA/SRIB, SOURCEA/B, CLK1-3, CE1-3, RST1-3) stay unconnected: nextpnr then
            # configures them inside the DSP instead of routing ~70 constant nets into every one of them
            # (which fails to route at 8×8 and beyond).
            ports = {f"i_A{i}": a18[i] for i in range(18)}
            ports.update({f"i_B{i}": b18[i] for i in range(18)})
            ports.update({f"o_P{i}": p[i] for i in range(36)})
            m.submodules.dsp = Instance(
                "MULT18X18D",
                p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
                p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
                p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
                p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
                p_CLK0_DIV="ENABLED", p_CLK1_DIV="ENABLED", p_CLK2_DIV="ENABLED", p_CLK3_DIV="ENABLED",
                p_HIGHSPEED_CLK="NONE", p_GSR="DISABLED", p_CAS_MATCH_REG="FALSE",
                p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED", p_RESETMODE="SYNC",
                i_SIGNEDA=Const(1), i_SIGNEDB=Const(1),
                i_CLK0=ClockSignal("sync"), i_CE0=Const(1),      # RST0 unconnected: never reset
                **ports)
            m.d.comb += product.eq(p[:2 * w])
        else:
            # The same two register stages as the DSP: input registers (a_out/b_out) and the output register.
            m.d.sync += product.eq(a_reg * b_reg)
        m.d.comb += self.capture.eq(first_d2)
        with m.If(first_d2):
            m.d.sync += shadow.eq(acc)
        m.d.sync += acc.eq(acc + product.as_signed())
        return m


class SystolicArray(wiring.Component):
    """R×C output-stationary array with edge skew and a column-wise shadow drain (see the module doc).

    Ports: `a` (R values) and `b` (C values) for one k-step, unskewed, and `first` for that step; zeros
    when idle. Per column j: `out_valid[j]`, `out_data[j]`.
    """

    def __init__(self, rows, cols, width=8, acc_width=32, mult="auto"):
        if rows < 1 or cols < 1:
            raise ValueError(f"the array needs at least one row and column, not {rows}×{cols}")
        check_cell_parameters(width, acc_width, mult)
        self.rows, self.cols, self.width, self.acc_width, self.mult = rows, cols, width, acc_width, mult
        super().__init__({
            "a": In(data.ArrayLayout(signed(width), rows)),
            "b": In(data.ArrayLayout(signed(width), cols)),
            "first": In(1),
            "out_valid": Out(cols),
            "out_first": Out(cols),     # the value on out_data[j] is row 0 (a new burst)
            "out_last": Out(cols),      # the value on out_data[j] is row R − 1 (the burst's last)
            "out_data": Out(data.ArrayLayout(unsigned(acc_width), cols)),
        })

    def drain_latency(self):
        """Cycles from `first` at the edge to the first shadow (row 0) of column 0 on `out_data[0]`."""
        return self.rows + CELL_LATENCY

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols
        cells = [[MacCell(self.width, self.acc_width, self.mult) for _ in range(C)] for _ in range(R)]
        for i in range(R):
            for j in range(C):
                m.submodules[f"cell_{i}_{j}"] = cells[i][j]

        def delayed(value, cycles, name, reset_less=True):
            for n in range(cycles):
                reg = Signal.like(value, name=f"{name}_d{n + 1}", reset_less=reset_less)
                m.d.sync += reg.eq(value)
                value = reg
            return value

        for i in range(R):
            m.d.comb += [cells[i][0].a_in.eq(delayed(self.a[i], i, f"skew_a{i}")),
                         cells[i][0].first_in.eq(delayed(self.first, i, f"skew_first{i}", reset_less=False))]
            for j in range(1, C):
                m.d.comb += [cells[i][j].a_in.eq(cells[i][j - 1].a_out),
                             cells[i][j].first_in.eq(cells[i][j - 1].first_out)]
        for j in range(C):
            m.d.comb += cells[0][j].b_in.eq(delayed(self.b[j], j, f"skew_b{j}"))
            for i in range(1, R):
                m.d.comb += cells[i][j].b_in.eq(cells[i - 1][j].b_out)

        # Drain: when the bottom cell of a column captures, every shadow of the column is fresh; a one-hot
        # selector walks rows 0…R-1 and a registered AND-OR mux puts each shadow on the column's output.
        for j in range(C):
            select = Signal(R, name=f"drain_select{j}")
            with m.If(cells[R - 1][j].capture):
                m.d.sync += select.eq(1)
            with m.Else():
                m.d.sync += select.eq(select << 1)
            picked = 0
            for i in range(R):
                picked = picked | (cells[i][j].shadow & select[i].replicate(self.acc_width))
            out_data = Signal(self.acc_width, name=f"drain_data{j}", reset_less=True)
            m.d.sync += [out_data.eq(picked), self.out_valid[j].eq(select.any()),
                         self.out_first[j].eq(select[0]), self.out_last[j].eq(select[R - 1])]
            m.d.comb += self.out_data[j].eq(out_data)
        return m
