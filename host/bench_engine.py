"""Contraction engine benchmarks: MAC utilization on the simulated device, and ECP5 synthesis.

- Utilization = useful MACs / (R·C · busy cycles), from the engine's own counters, on the Verilated SoC
  (engine_sim_config(): 8×8 int8 array, 64×64 tiles, K chunks of 256): a resident 256×256×256 GEMM (goal
  ≥ 97 %) and permuted-layout contractions in the style of the TCCG suite (goal ≥ 90 %). Operands are
  written into tensor memory first ("resident"); the transfer time is not part of the figure. Every result
  is checked against the golden model.
- Synthesis of the engine alone (`boards.synth.synthesize_block`, LFE5U-85F, speed 6, MULT18X18D with
  their input/output registers, block RAMs as DP16KD with their output registers, rtl/ecp5_ram.py) at 8×8
  and at the largest array the 85F's 156 multipliers allow (12×12): LUT4, FF, DSP, BRAM, Fmax; goals at
  8×8: Fmax ≥ 150 MHz and ≤ 50 LUT4 per MAC. Distributed RAM
  (TRELLIS_DPR16X4) is reported apart, and the array alone (Yosys only) as LUT4 per MAC, so the control's
  share is visible. Each shape takes 15–40 minutes (place and route dominates), so only the full bench
  runs it.
"""

import numpy as np

from .bench import Result

CMD = "make bench"


def _dense(extents, order):
    """Column-major dense strides (first mode of `order` fastest) for modes with `extents`."""
    strides, size = {}, 1
    for mode in order:
        strides[mode] = size
        size *= extents[mode]
    return strides, size


def permuted_cases():
    """(name, descriptor, bytes used) for a few permuted-layout contractions (TCCG-style index strings:
    D-A-B, first index fastest in memory)."""
    from . import contraction_model as cm
    from .rtl import contraction_format as cf
    cases = []
    # abcd-aebf-fdec: M = {a, b}, N = {c, d}, K = {e, f}; A's fastest mode is free (a), B's contracted (f).
    ext = dict(a=16, b=16, c=16, d=16, e=16, f=16)
    sa, na = _dense(ext, "aebf")
    sb, nb = _dense(ext, "fdec")
    sd, nd = _dense(ext, "abcd")
    base_a, base_b, base_d = 0, 65536, 131072
    loops = (cm.Loop(ext["d"], cf.ROLE_N, stride_b=sb["d"], stride_d=sd["d"]),
             cm.Loop(ext["c"], cf.ROLE_N, stride_b=sb["c"], stride_d=sd["c"]),
             cm.Loop(ext["b"], cf.ROLE_M, stride_a=sa["b"], stride_d=sd["b"]),
             cm.Loop(ext["a"], cf.ROLE_M, stride_a=sa["a"], stride_d=sd["a"]),
             cm.Loop(ext["e"], cf.ROLE_K, stride_a=sa["e"], stride_b=sb["e"]),
             cm.Loop(ext["f"], cf.ROLE_K, stride_a=sa["f"], stride_b=sb["f"]))
    cases.append(("abcd-aebf-fdec (16^6)", cm.Descriptor(loops, base_a, base_b, 0, base_d), base_d + nd * 4))
    # abc-bda-dc: M = {a, b}, N = {c}, K = {d}; A's fastest mode is free (b), B's contracted (d).
    ext = dict(a=32, b=16, c=128, d=256)
    sa, na = _dense(ext, "bda")
    sb, nb = _dense(ext, "dc")
    sd, nd = _dense(ext, "abc")
    base_a, base_b, base_d = 0, 131072, 196608
    loops = (cm.Loop(ext["c"], cf.ROLE_N, stride_b=sb["c"], stride_d=sd["c"]),
             cm.Loop(ext["a"], cf.ROLE_M, stride_a=sa["a"], stride_d=sd["a"]),
             cm.Loop(ext["b"], cf.ROLE_M, stride_a=sa["b"], stride_d=sd["b"]),
             cm.Loop(ext["d"], cf.ROLE_K, stride_a=sa["d"], stride_b=sb["d"]))
    cases.append(("abc-bda-dc (512x128x256)", cm.Descriptor(loops, base_a, base_b, 0, base_d), base_d + nd * 4))
    # GEMM with A stored transposed (K×M) and accumulate-C: D = Aᵀ·B + C.
    m, n, k = 256, 128, 256
    loops = (cm.Loop(m, cf.ROLE_M, stride_a=1, stride_c=n, stride_d=n),
             cm.Loop(n, cf.ROLE_N, stride_b=1, stride_c=1, stride_d=1),
             cm.Loop(k, cf.ROLE_K, stride_a=m, stride_b=n))
    cases.append(("gemm At·B + C (256x128x256)",
                  cm.Descriptor(loops, 0, 65536, 131072, 262144, accumulate=True), 262144 + m * n * 4))
    return cases


def _run_case(eng, desc, used, rng):
    from . import contraction_model as cm
    mem = np.zeros(eng.tensor_bytes, dtype=np.uint8)
    mem[:used] = rng.integers(0, 256, used, dtype=np.uint8)
    eng.write_tensor(0, mem[:used])
    expected = cm.execute(desc, mem, eng.width)
    eng.clear_counters()
    eng.run(desc, timeout=120)
    counters = eng.counters()
    got = eng.read_tensor(0, np.uint8, used)
    if not np.array_equal(got, expected[:used]):
        raise AssertionError("engine benchmark result differs from the golden model")
    return counters


def bench_engine(quick=False):
    import tensornic
    from . import contraction_model as cm
    from .engine import Engine, engine_sim_config

    results = []
    rng = np.random.default_rng(0)
    config = engine_sim_config()
    with tensornic.open("sim", config=config) as dev:
        eng = Engine(dev)
        desc = cm.gemm(256, 256, 256, base_a=0, base_b=65536, base_d=131072)
        c = _run_case(eng, desc, 131072 + 256 * 256 * 4, rng)
        results.append(Result("engine MAC utilization, resident 256³ int8 GEMM, 8×8 array",
                              100 * c["utilization"], "%", 97, command=CMD))
        results.append(Result("  busy cycles (256³ GEMM; ideal 262144)", c["busy_cycles"], "cycles", 262144,
                              higher_is_better=False, command=CMD))
        for name, desc, used in permuted_cases()[:1 if quick else None]:
            c = _run_case(eng, desc, used, rng)
            results.append(Result(f"engine MAC utilization, {name}", 100 * c["utilization"], "%", 90,
                                  command=CMD))
    if not quick:
        results += bench_engine_synthesis()
    return results


def bench_engine_synthesis(shapes=((8, 8), (12, 12))):
    from .boards.synth import synthesize_block
    from .rtl.contraction_engine import ContractionEngine
    results = []
    for rows, cols in shapes:
        engine = ContractionEngine(rows=rows, cols=cols, width=8, loops=8, tile_m=8 * rows, tile_n=8 * cols,
                                   chunk_k=256, queue=4, tensor_bytes=512 * 1024, mult="ecp5",
                                   ram="ecp5")
        macs = rows * cols
        tag = f"engine {rows}×{cols} on LFE5U-85F"
        try:
            r = synthesize_block(engine, f"engine_{rows}x{cols}", clock_mhz=150)
        except Exception as error:       # e.g. nextpnr could not route: report it, keep the other results
            results.append(Result(f"{tag}: synthesis failed ({type(error).__name__}: "
                                  f"{str(error).splitlines()[0][:80]})", 0, "", None, command=CMD))
            continue
        goal_8 = (rows, cols) == (8, 8)
        results += [
            Result(f"{tag}: Fmax", r["fmax_mhz"], "MHz", 150 if goal_8 else None, command=CMD),
            Result(f"{tag}: LUT4 per MAC", r["LUT4"] / macs, "LUT4", 50 if goal_8 else None,
                   higher_is_better=False, command=CMD),
            Result(f"{tag}: LUT4", r["LUT4"], "", None, command=CMD),
            Result(f"{tag}: distributed RAM (TRELLIS_DPR16X4, not in LUT4)", r["LUTRAM"], "", None,
                   command=CMD),
            Result(f"{tag}: FF", r["FF"], "", None, command=CMD),
            Result(f"{tag}: MULT18X18D", r["DSP"], "", None, command=CMD),
            Result(f"{tag}: DP16KD", r["BRAM"], "", None, command=CMD),
        ]
        try:
            array_lut4 = array_only_lut4(rows, cols, engine.core.acc_bits)
        except Exception as error:
            results.append(Result(f"{tag}: array-only synthesis failed ({type(error).__name__})", 0, "", None,
                                  command=CMD))
        else:
            results.append(Result(f"{tag}: array alone, LUT4 per MAC", array_lut4 / macs, "LUT4", None,
                                  higher_is_better=False, command=CMD))
    return results


def array_only_lut4(rows, cols, acc_bits, width=8):
    """LUT4 (incl. 2 per CCU2C) of the systolic array alone (cells, skew, drain), Yosys synth_ecp5 only."""
    import subprocess
    import tempfile
    from pathlib import Path
    from amaranth.back import verilog
    from .boards.build import yowasp_tool, _synth_cell_counts
    from .rtl.systolic import SystolicArray
    with tempfile.TemporaryDirectory(prefix="synth-array-") as tmp:
        work = Path(tmp)
        (work / "array.v").write_text(verilog.convert(SystolicArray(rows, cols, width, acc_bits, "ecp5"),
                                                      name="array", emit_src=False))
        subprocess.run([yowasp_tool("yosys"), "-q", "-p",
                        "read_verilog -sv array.v; hierarchy -top array; proc; flatten; splitnets; "
                        "synth_ecp5 -top array; tee -q -o array.stat.json stat -json"],
                       cwd=work, check=True, stdout=subprocess.DEVNULL)
        cells = _synth_cell_counts(work / "array.stat.json")
    return cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
