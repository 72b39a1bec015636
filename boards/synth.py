"""Resources and Fmax of one gateware block on the ULX3S's ECP5 (LFE5U-85F), with the pinned YoWASP tools.

`synthesize_block(component, name)` answers "how big and how fast is this block" without a board top:

- Resources: Yosys `synth_ecp5` of the block alone, counted from `stat`. LUT4 counts every LUT4 the logic
  occupies: plain LUT4 cells plus two per CCU2C carry cell (a CCU2C is the two LUT4s of a slice in carry
  mode). Distributed RAM (TRELLIS_DPR16X4) is reported apart as LUTRAM; FF = TRELLIS_FF, DSP = MULT18X18D,
  BRAM = DP16KD.
- Fmax: place and route (nextpnr-ecp5, fixed seed) of an out-of-context wrapper whose every block input is
  driven by a flip-flop and whose every output is captured by one, so every path inside the block — and the
  paths from its inputs and to its outputs, which a real neighbour would register — is timed. A block has
  more I/O bits than the package has pins, so the wrapper feeds the input flip-flops as one long shift
  register from a single pin and folds the captured outputs into one pin through a tree of registered
  4-input XORs (nothing can be optimised away; the wrapper's own paths are one LUT deep). The wrapper's
  flip-flops and LUTs are not counted in the resources.

Everything runs in a fresh directory (default: a temporary one; `out_dir=` keeps the files).
"""

import json
import subprocess
import tempfile
import time
from pathlib import Path

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .build import BuildError, _synth_cell_counts, parse_fmax, yowasp_tool

__all__ = ["synthesize_block", "OutOfContext"]

#: nextpnr-ecp5 device flags by the name the boards use.
_DEVICES = {"25k", "45k", "85k", "um-25k", "um-45k", "um-85k", "um5g-25k", "um5g-45k", "um5g-85k", "12k"}


class OutOfContext(wiring.Component):
    """The wrapper described in the module docstring: `din` shifts into the block's inputs, `dout` is the
    XOR of everything the block output (all through registers)."""

    din: In(1)
    dout: Out(1)

    def __init__(self, block: wiring.Component):
        self.block = block
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.block = block = self.block
        inputs, outputs = [], []
        for _path, member, value in block.signature.flatten(block):
            (inputs if member.flow == In else outputs).append(Value.cast(value))
        if not outputs:
            raise ValueError("the block has no outputs to time")

        width_in = sum(len(v) for v in inputs)
        if width_in:
            chain = Signal(width_in)
            m.d.sync += chain.eq(Cat(self.din, chain[:-1]))
            offset = 0
            for value in inputs:
                m.d.comb += value.eq(chain[offset:offset + len(value)])
                offset += len(value)

        level = Signal(sum(len(v) for v in outputs), name="captured")
        m.d.sync += level.eq(Cat(*outputs))
        depth = 0
        while len(level) > 1:
            depth += 1
            groups = [level[n:n + 4] for n in range(0, len(level), 4)]
            folded = Signal(len(groups), name=f"xor{depth}")
            m.d.sync += folded.eq(Cat(*[group.xor() for group in groups]))
            level = folded
        m.d.comb += self.dout.eq(level)
        return m


def _run(tool, args, cwd, log_name):
    start = time.monotonic()
    with open(Path(cwd) / log_name, "w") as log:
        result = subprocess.run([yowasp_tool(tool), *args], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "\n".join((Path(cwd) / log_name).read_text(errors="replace").splitlines()[-25:])
        raise BuildError(f"{tool} failed ({result.returncode}) in {cwd}:\n{tail}")
    return time.monotonic() - start


def _synth_script(top):
    # `splitnets` before synthesis sidesteps a Yosys assertion in ABC9's reintegration on some Amaranth
    # designs ("count_id(wire->name) == 0", YosysHQ/yosys#4349), as the Yosys developers suggest there.
    return f"read_verilog -sv {top}.v; hierarchy -top {top}; proc; flatten; splitnets; synth_ecp5 -top {top}"


def synthesize_block(component, name: str, *, clock_mhz: float = 125, device: str = "85k",
                     package: str = "CABGA381", speed: int = 6, seed: int = 1, out_dir=None) -> dict:
    """Synthesize `component` (an Amaranth wiring.Component; it is elaborated twice) for an ECP5 and
    place and route it out of context; see the module docstring.

    Returns {"LUT4", "FF", "DSP", "BRAM", "LUTRAM", "fmax_mhz", "target_mhz", "cells", "seconds"} where
    `cells` is Yosys's full cell count of the block and `seconds` the wall time per step.
    """
    from amaranth.back import verilog

    if device not in _DEVICES:
        raise ValueError(f"unknown ECP5 device {device!r}; nextpnr-ecp5 knows {sorted(_DEVICES)}")
    if not name.isidentifier():
        raise ValueError(f"name must be a plain identifier (it names Verilog modules), not {name!r}")
    with tempfile.TemporaryDirectory(prefix=f"synth-{name}-") as tmp:
        work = Path(out_dir) if out_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        seconds = {}

        # The block alone: what it occupies.
        (work / f"{name}.v").write_text(verilog.convert(component, name=name, emit_src=False))
        seconds["synthesis (block)"] = _run("yosys", [
            "-q", "-l", f"{name}.yosys.log", "-p",
            _synth_script(name) + f"; tee -q -o {name}.stat.json stat -json",
        ], work, f"{name}.yosys.stdout")
        cells = _synth_cell_counts(work / f"{name}.stat.json")
        if not cells:
            raise BuildError(f"yosys reported no cells for {name} (see {work / (name + '.yosys.log')})")

        # The wrapper: how fast it runs.
        top = f"{name}_ooc"
        (work / f"{top}.v").write_text(verilog.convert(OutOfContext(component), name=top, emit_src=False))
        seconds["synthesis (wrapper)"] = _run("yosys", [
            "-q", "-l", f"{top}.yosys.log", "-p", _synth_script(top) + f"; write_json {top}.json",
        ], work, f"{top}.yosys.stdout")
        seconds["place and route"] = _run("nextpnr-ecp5", [
            f"--{device}", "--package", package, "--speed", str(speed), "--freq", str(clock_mhz),
            "--json", f"{top}.json", "--report", f"{top}.report.json", "--timing-allow-fail",
            "--seed", str(seed), "--log", f"{top}.nextpnr.log",
        ], work, f"{top}.nextpnr.stdout")
        report = json.loads((work / f"{top}.report.json").read_text())

    fmax = parse_fmax(report)
    if not fmax:
        raise BuildError(f"nextpnr reported no clock for {name}")
    achieved = min(achieved for achieved, _ in fmax.values())
    return {
        "LUT4": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0),
        "FF": cells.get("TRELLIS_FF", 0),
        "DSP": cells.get("MULT18X18D", 0),
        "BRAM": cells.get("DP16KD", 0),
        "LUTRAM": cells.get("TRELLIS_DPR16X4", 0),
        "fmax_mhz": achieved,
        "target_mhz": float(clock_mhz),
        "cells": cells,
        "seconds": {step: round(t, 1) for step, t in seconds.items()},
    }
