"""Benchmarks of the number formats: bit-exactness at volume, round-trip error, and the gateware's size and speed.

`bench_formats(quick=False)` returns `tensornic.bench.Result`s:
- the FP32 adder gateware against SoftFloat over 10⁶ vectors (10⁵ quick) and the MXINT8 codecs against the
  golden model over 10⁵ blocks (10⁴ quick), through the native Verilator stream driver with idle gaps and
  backpressure; any mismatch raises AssertionError, so a result means zero mismatches;
- the round-trip error study (`error_study`): relative L2 error of BF16 and of MXINT8 at k = 16 and 32 on
  Gaussian, heavy-tailed (Student-t, ν = 2) and sparse data;
- per block, synthesis for the ULX3S's LFE5U-85F (speed grade 6) with `boards.synth.synthesize_block`: Fmax
  against 125 MHz, LUT4 per lane, flip-flops, block RAM (skipped with `quick`).

`python -m tensornic.bench_formats [--quick]` prints them, with the error table.
"""

import numpy as np

from .bench import Result
from .formats import bf16_decode, bf16_encode, mxint8_decode, mxint8_encode

__all__ = ["bench_formats", "error_study", "error_table", "DISTRIBUTIONS", "CODECS"]

COMMAND = "python -m tensornic.bench_formats"
TARGET_MHZ = 125


# --- round-trip error study ----------------------------------------------------------------------------------

def _gaussian(rng, n):
    return rng.standard_normal(n)


def _heavy_tailed(rng, n):
    return rng.standard_t(2, n)


def _sparse(rng, n):
    """90 % zeros, the rest Gaussian (like a gradient of mostly unused embeddings)."""
    return np.where(rng.random(n) < 0.9, 0.0, rng.standard_normal(n))


DISTRIBUTIONS = {"Gaussian": _gaussian, "Student-t ν=2": _heavy_tailed, "sparse 90 %": _sparse}

CODECS = {
    "BF16": lambda x: bf16_decode(bf16_encode(x)),
    "MXINT8 k=16": lambda x: mxint8_decode(*mxint8_encode(x, 16), 16),
    "MXINT8 k=32": lambda x: mxint8_decode(*mxint8_encode(x, 32), 32),
}


def error_study(n: int = 1 << 18, seed: int = 0) -> dict:
    """(distribution, codec) → relative L2 error ‖x̂ − x‖ / ‖x‖ of a round trip through the codec, for
    `n` float32 values per distribution (n a multiple of 32)."""
    if n <= 0 or n % 32:
        raise ValueError(f"n must be a positive multiple of 32, not {n}")
    rng = np.random.default_rng(seed)
    study = {}
    for dist_name, draw in DISTRIBUTIONS.items():
        x = draw(rng, n).astype(np.float32)
        reference = x.astype(np.float64)
        norm = np.linalg.norm(reference)
        for codec_name, roundtrip in CODECS.items():
            error = np.linalg.norm(roundtrip(x).astype(np.float64) - reference)
            study[(dist_name, codec_name)] = float(error / norm)
    return study


def error_table(study: dict) -> str:
    """The study as a Markdown table: one row per distribution, one column per codec (percent)."""
    dists = list(dict.fromkeys(d for d, _ in study))
    codecs = list(dict.fromkeys(c for _, c in study))
    lines = ["| data | " + " | ".join(codecs) + " |", "| --- |" + " ---: |" * len(codecs)]
    for dist in dists:
        lines.append(f"| {dist} | " + " | ".join(f"{100 * study[(dist, c)]:.3f} %" for c in codecs) + " |")
    return "\n".join(lines)


# --- gateware ------------------------------------------------------------------------------------------------

def _blocks():
    """(name, factory, lanes) of every block measured, at one lane (and the adder also at four)."""
    from .rtl.bf16 import Bf16Decoder, Bf16Encoder
    from .rtl.fp32_add import Fp32Adder
    from .rtl.mxint8 import MxInt8Decoder, MxInt8Encoder
    return [
        ("fp32_add", lambda: Fp32Adder(1), 1),
        ("bf16_encoder", lambda: Bf16Encoder(1), 1),
        ("bf16_decoder", lambda: Bf16Decoder(1), 1),
        ("mxint8_encoder_k32", lambda: MxInt8Encoder(32, 1), 1),
        ("mxint8_encoder_k16", lambda: MxInt8Encoder(16, 1), 1),
        ("mxint8_decoder", lambda: MxInt8Decoder(32, 1), 1),
        ("fp32_add_x4", lambda: Fp32Adder(4), 4),
    ]


def synthesis_results(progress=None) -> list:
    from .boards.synth import synthesize_block
    results = []
    for name, make, lanes in _blocks():
        if progress:
            progress(f"synthesizing {name}")
        r = synthesize_block(make(), name, clock_mhz=TARGET_MHZ)
        label = f"{name} ({lanes} lane{'s' if lanes > 1 else ''})"
        results.append(Result(f"{label}: Fmax on LFE5U-85F-6", r["fmax_mhz"], "MHz", TARGET_MHZ,
                              command=COMMAND))
        results.append(Result(f"{label}: LUT4 per lane", r["LUT4"] / lanes, "LUT4", command=COMMAND))
        results.append(Result(f"{label}: flip-flops", r["FF"], "FF", command=COMMAND))
        if r["BRAM"]:
            results.append(Result(f"{label}: DP16KD block RAMs", r["BRAM"], "DP16KD", command=COMMAND))
        if r["LUTRAM"]:
            results.append(Result(f"{label}: distributed RAM cells", r["LUTRAM"], "DPR16X4", command=COMMAND))
        if r["DSP"]:
            results.append(Result(f"{label}: multipliers", r["DSP"], "MULT18X18D", command=COMMAND))
    return results


def exactness_results(quick=False, progress=None) -> list:
    from .sim.test_fp32_add import run_native as run_adder
    from .sim.test_mxint8 import run_native_decoder, run_native_encoder

    vectors = 100_000 if quick else 1_000_000
    blocks = 10_000 if quick else 100_000
    results = []
    if progress:
        progress(f"FP32 adder: {vectors} vectors against SoftFloat")
    checked, run = run_adder(vectors, seed=1_000_000)
    results.append(Result("FP32 adder RTL = SoftFloat bit for bit (vectors, 0 mismatches)", checked, "vectors",
                          vectors, command=COMMAND))
    results.append(Result("native stream driver speed (FP32 adder, gaps and backpressure)",
                          run.cycles / run.seconds, "cycles/s", command=COMMAND))
    for block in (32, 16):
        if progress:
            progress(f"MXINT8 encoder k={block}: {blocks} blocks against the golden model")
        checked, _ = run_native_encoder(blocks, block, seed=block)
        results.append(Result(f"MXINT8 encoder k={block} RTL = model (blocks, 0 mismatches)", checked, "blocks",
                              blocks, command=COMMAND))
    if progress:
        progress(f"MXINT8 decoder: {blocks} blocks against the golden model")
    checked, _ = run_native_decoder(blocks)
    results.append(Result("MXINT8 decoder RTL = model (blocks, 0 mismatches)", checked, "blocks", blocks,
                          command=COMMAND))
    return results


def bench_formats(quick=False, progress=None) -> list:
    """All of the above; see the module docstring."""
    results = exactness_results(quick, progress)
    study = error_study(1 << (16 if quick else 20))
    for (dist, codec), error in study.items():
        results.append(Result(f"round-trip rel. L2 error, {dist}, {codec}", error, "", higher_is_better=False,
                              command=COMMAND))
    if not quick:
        results += synthesis_results(progress)
    return results


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer vectors, no synthesis")
    args = parser.parse_args(argv)
    print(error_table(error_study(1 << (16 if args.quick else 20))))
    print()
    for r in bench_formats(args.quick, progress=lambda line: print(f"… {line}", flush=True)):
        goal = "" if r.goal is None else f"  (goal {r.goal:g} {r.unit})"
        print(f"{r.name}: {r.value:.6g} {r.unit}{goal}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
