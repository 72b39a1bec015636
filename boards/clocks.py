"""Clock generation for board tops: the ECP5's EHXPLLL, configured from the wanted frequencies.

The divider search follows the part's data sheet limits (Lattice FPGA-DS-02012, EHXPLLL): the phase
detector input fin / CLKI_DIV in 3.125…400 MHz, the VCO in 400…800 MHz, outputs 3.125…400 MHz. CLKOP is
fed back, so f(CLKOP) = fin · CLKFB_DIV / CLKI_DIV and VCO = f(CLKOP) · CLKOP_DIV; each further output
is VCO / CLKOSx_DIV.

Phase: an output may lag CLKOP by a given angle of its own period (`phases=`), set in whole VCO cycles
(CPHASE, counted from DIV - 1, the zero-phase setting) and eighths of a VCO cycle (FPHASE). The ECPIX-5
uses this for its RGMII transmit clock: a copy of the 125 MHz GMII clock 90° (2 ns) late.
"""

import dataclasses
import itertools

from amaranth import ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib.cdc import ResetSynchronizer

__all__ = ["PllError", "PllPlan", "plan_ecp5_pll", "phase_setting", "Ecp5Pll"]

PFD_MHZ = (3.125, 400.0)
VCO_MHZ = (400.0, 800.0)
OUT_MHZ = (3.125, 400.0)
SECONDARY_OUTPUTS = ("CLKOS", "CLKOS2", "CLKOS3")


class PllError(ValueError):
    """No divider setting gives the requested frequencies closely enough."""


@dataclasses.dataclass(frozen=True)
class PllPlan:
    input_mhz: float
    clki_div: int
    clkfb_div: int
    output_divs: tuple            # CLKOP first, then CLKOS, CLKOS2, CLKOS3 as needed
    achieved_mhz: tuple

    @property
    def vco_mhz(self):
        return self.achieved_mhz[0] * self.output_divs[0]


def plan_ecp5_pll(input_mhz: float, outputs_mhz, tolerance=0.0):
    """Dividers for `outputs_mhz` (CLKOP first; at most 4) from `input_mhz`. Every output must be met to
    within `tolerance` (relative; 0 = exactly, as the SoC's UART divisor and the 125 MHz GMII clock need);
    among the settings that do, the one with the highest VCO (lowest jitter) wins."""
    outputs_mhz = tuple(float(f) for f in outputs_mhz)
    if not 1 <= len(outputs_mhz) <= 4:
        raise PllError(f"an EHXPLLL has 1 to 4 outputs, not {len(outputs_mhz)}")
    best = None
    for clki_div, clkfb_div in itertools.product(range(1, 129), range(1, 81)):
        if not PFD_MHZ[0] <= input_mhz / clki_div <= PFD_MHZ[1]:
            continue
        op = input_mhz * clkfb_div / clki_div
        if abs(op / outputs_mhz[0] - 1) > tolerance + 1e-12 or not OUT_MHZ[0] <= op <= OUT_MHZ[1]:
            continue
        for op_div in range(1, 129):
            vco = op * op_div
            if not VCO_MHZ[0] <= vco <= VCO_MHZ[1]:
                continue
            divs, achieved = [op_div], [op]
            for want in outputs_mhz[1:]:
                div = max(1, min(128, round(vco / want)))
                if abs(vco / div / want - 1) > tolerance + 1e-12:
                    break
                divs.append(div)
                achieved.append(vco / div)
            else:
                if best is None or vco > best.vco_mhz:
                    best = PllPlan(input_mhz, clki_div, clkfb_div, tuple(divs), tuple(achieved))
    if best is None:
        raise PllError(f"the ECP5 PLL cannot make {', '.join(f'{f:g}' for f in outputs_mhz)} MHz from "
                       f"{input_mhz:g} MHz (tolerance {tolerance:.2%}); pick frequencies that share a VCO "
                       f"in {VCO_MHZ[0]:g}…{VCO_MHZ[1]:g} MHz")
    return best


def phase_setting(vco_mhz: float, div: int, degrees: float):
    """(whole VCO cycles, eighths of a VCO cycle) closest to `degrees` of the period of an output
    divided by `div` from `vco_mhz`, and the delay achieved in ns."""
    if not 0 <= degrees < 360:
        raise PllError(f"a phase of {degrees:g}° is outside 0…360°")
    eighths = round(degrees / 360 * div * 8)
    whole, fine = divmod(eighths, 8)
    return whole, fine, eighths / 8 * 1e3 / vco_mhz


class Ecp5Pll(Elaboratable):
    """An EHXPLLL driving the clocks of `domains` ({name: Hz}, the first is CLKOP) from the clock of
    `source_domain`, each output lagging by `phases` ({name: degrees}, default 0; not CLKOP, which is
    the feedback). The caller defines the domains (in the top module, as Amaranth wants); each is held in
    reset until the PLL locks, and released synchronously to its own clock."""

    def __init__(self, source_domain: str, input_hz: float, domains: dict, phases: dict | None = None):
        self.source_domain = source_domain
        self.domains = dict(domains)
        self.phases = dict(phases or {})
        unknown = set(self.phases) - set(self.domains)
        if unknown:
            self._MustUse__silence = True   # a PLL that failed to construct is not an unused design
            raise PllError(f"phases given for {sorted(unknown)}, which are not among the PLL's domains")
        if self.phases.get(next(iter(self.domains)), 0):
            self._MustUse__silence = True
            raise PllError("the first domain is CLKOP, the PLL's feedback: it cannot be phase-shifted")
        self.plan = plan_ecp5_pll(input_hz / 1e6, [hz / 1e6 for hz in self.domains.values()])
        self.locked = Signal()

    def delay_ns(self, name) -> float:
        """How far the output of domain `name` lags its zero-phase edge, in ns."""
        index = list(self.domains).index(name)
        return phase_setting(self.plan.vco_mhz, self.plan.output_divs[index], self.phases.get(name, 0))[2]

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        clocks = [Signal(name=f"pll_{name}_clk") for name in self.domains]
        params = {
            "p_PLLRST_ENA": "DISABLED", "p_INTFB_WAKE": "DISABLED", "p_STDBY_ENABLE": "DISABLED",
            "p_DPHASE_SOURCE": "DISABLED", "p_OUTDIVIDER_MUXA": "DIVA", "p_OUTDIVIDER_MUXB": "DIVB",
            "p_OUTDIVIDER_MUXC": "DIVC", "p_OUTDIVIDER_MUXD": "DIVD", "p_FEEDBK_PATH": "CLKOP",
            "p_CLKI_DIV": plan.clki_div, "p_CLKFB_DIV": plan.clkfb_div,
            "a_FREQUENCY_PIN_CLKI": f"{plan.input_mhz:g}",
            "a_ICP_CURRENT": "12", "a_LPF_RESISTOR": "8", "a_MFG_ENABLE_FILTEROPAMP": "1",
            "a_MFG_GMCREF_SEL": "2",
            "i_CLKI": ClockSignal(self.source_domain), "i_CLKFB": clocks[0],
            "i_RST": 0, "i_STDBY": 0, "i_PHASESEL0": 0, "i_PHASESEL1": 0, "i_PHASEDIR": 1,
            "i_PHASESTEP": 1, "i_PHASELOADREG": 1, "i_PLLWAKESYNC": 0, "i_ENCLKOP": 0,
            "o_LOCK": self.locked,
        }
        for output, div, mhz, clock, name in zip(("CLKOP",) + SECONDARY_OUTPUTS, plan.output_divs,
                                                 plan.achieved_mhz, clocks, self.domains):
            whole, fine, _ = phase_setting(plan.vco_mhz, div, self.phases.get(name, 0))
            params[f"p_{output}_ENABLE"] = "ENABLED"
            params[f"p_{output}_DIV"] = div
            params[f"p_{output}_CPHASE"] = div - 1 + whole      # div - 1: zero phase
            params[f"p_{output}_FPHASE"] = fine
            params[f"a_FREQUENCY_PIN_{output}"] = f"{mhz:g}"
            params[f"o_{output}"] = clock
        m.submodules.pll = Instance("EHXPLLL", **params)

        for (name, hz), clock in zip(self.domains.items(), clocks):
            m.d.comb += ClockSignal(name).eq(clock)
            if platform is not None:
                platform.add_clock_constraint(clock, hz)
            m.submodules[f"{name}_reset_sync"] = ResetSynchronizer(~self.locked, domain=name)
        return m
