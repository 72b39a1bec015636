"""TAPP contraction benchmarks (`bench_tapp`), the TCCG pattern table, and the `make demo` contraction step.

Per contraction, on the simulated device (engine_sim_config(): 8×8 int8 array, 512 KiB tensor memory):
- device cycles: the engine's busy cycles for the whole contraction, operands sent from the host;
- resident MAC utilization: useful MACs / (R·C · busy cycles) with A, B and D already in tensor memory;
- bytes over the host link (both directions, framing included), against the planner's expectation;
- modeled end-to-end time at 3 Mbaud: link bytes · 10 bits / 3 Mbaud + busy cycles / clock;
- the share of that time spent transferring (the rest is computing);
- numpy's CPU time for the same einsum (int64) as a reference line.
Every device result is checked against numpy before its numbers are reported.

TCCG: the 48 contractions of Springer & Bientinesi, "Design of a High-Performance GEMM-like Tensor-Tensor
Multiplication" (TOMS 2018, the TCCG benchmark), in the paper's D-A-B notation with its single-precision
extents; `tccg_case(name, budget)` scales them down (first index fastest in memory, as in the paper).
"""

import math
import time

import numpy as np

from .bench import Result

CMD = "make bench"

#: (D-A-B label strings, extents) of the 48 TCCG contractions.
TCCG = [
    ("abc-bda-dc", dict(a=384, b=384, c=24, d=384)),
    ("abc-dca-bd", dict(a=384, b=24, c=376, d=384)),
    ("abcd-dbea-ec", dict(a=96, b=84, c=24, d=96, e=96)),
    ("abcd-deca-be", dict(a=96, b=24, c=84, d=96, e=84)),
    ("abcd-ebad-ce", dict(a=96, b=84, c=24, d=84, e=96)),
    ("abcde-efbad-cf", dict(a=48, b=36, c=24, d=36, e=48, f=36)),
    ("abcde-ecbfa-fd", dict(a=48, b=36, c=36, d=24, e=48, f=48)),
    ("abcde-efcad-bf", dict(a=48, b=24, c=36, d=36, e=48, f=36)),
    ("abcd-ea-ebcd", dict(a=96, b=84, c=84, d=84, e=96)),
    ("abcd-eb-aecd", dict(a=96, b=84, c=84, d=84, e=96)),
    ("abcd-ec-abed", dict(a=96, b=84, c=84, d=84, e=96)),
    ("ab-ac-cb", dict(a=7248, b=7240, c=7248)),
    ("ab-acd-dbc", dict(a=384, b=376, c=376, d=384)),
    ("ab-cad-dcb", dict(a=384, b=376, c=384, d=384)),
    ("abc-acd-db", dict(a=384, b=376, c=376, d=384)),
    ("abc-ad-bdc", dict(a=384, b=384, c=376, d=376)),
    ("abc-adc-bd", dict(a=384, b=384, c=376, d=376)),
    ("abc-adc-db", dict(a=384, b=376, c=376, d=384)),
    ("abc-adec-ebd", dict(a=96, b=84, c=84, d=84, e=96)),
    ("abcd-aebf-dfce", dict(a=96, b=84, c=84, d=96, e=84, f=84)),
    ("abcd-aebf-fdec", dict(a=96, b=84, c=84, d=84, e=84, f=96)),
    ("abcd-aecf-bfde", dict(a=96, b=96, c=84, d=84, e=84, f=84)),
    ("abcd-aecf-fbed", dict(a=96, b=84, c=84, d=84, e=84, f=96)),
    ("abcd-aedf-bfce", dict(a=96, b=96, c=84, d=84, e=84, f=84)),
    ("abcd-aedf-fbec", dict(a=96, b=84, c=84, d=84, e=84, f=96)),
    ("abcd-aefb-fdce", dict(a=96, b=84, c=84, d=84, e=84, f=96)),
    ("abcd-aefc-fbed", dict(a=96, b=84, c=84, d=84, e=84, f=96)),
    ("abcd-eafb-fdec", dict(a=96, b=84, c=84, d=84, e=96, f=96)),
    ("abcd-eafc-bfde", dict(a=96, b=96, c=84, d=84, e=96, f=84)),
    ("abcd-eafd-fbec", dict(a=96, b=84, c=84, d=84, e=96, f=96)),
    ("abcdef-dega-gfbc", dict(a=24, b=20, c=20, d=24, e=20, f=20, g=24)),
    ("abcdef-degb-gfac", dict(a=24, b=20, c=20, d=24, e=20, f=20, g=24)),
    ("abcdef-degc-gfab", dict(a=24, b=20, c=20, d=24, e=20, f=20, g=24)),
    ("abcdef-dfga-gebc", dict(a=24, b=20, c=20, d=24, e=20, f=20, g=24)),
    ("abcdef-dfgb-geac", dict(a=24, b=20, c=20, d=24, e=20, f=20, g=24)),
    ("abcdef-dfgc-geab", dict(a=24, b=20, c=20, d=24, e=20, f=20, g=24)),
    ("abcdef-efga-gdbc", dict(a=24, b=20, c=20, d=20, e=24, f=20, g=24)),
    ("abcdef-efgb-gdac", dict(a=24, b=20, c=20, d=20, e=24, f=20, g=24)),
    ("abcdef-efgc-gdab", dict(a=24, b=20, c=20, d=20, e=24, f=20, g=24)),
    ("abcdef-gdab-efgc", dict(a=24, b=20, c=20, d=20, e=24, f=20, g=24)),
    ("abcdef-gdac-efgb", dict(a=24, b=20, c=20, d=20, e=24, f=20, g=24)),
    ("abcdef-gdbc-efga", dict(a=24, b=20, c=20, d=20, e=24, f=20, g=24)),
    ("abcdef-geab-dfgc", dict(a=24, b=20, c=20, d=24, e=20, f=20, g=24)),
    ("abcdef-geac-dfgb", dict(a=24, b=20, c=20, d=24, e=20, f=20, g=24)),
    ("abcdef-gebc-dfga", dict(a=24, b=20, c=20, d=24, e=20, f=20, g=24)),
    ("abcdef-gfab-degc", dict(a=24, b=20, c=20, d=24, e=20, f=20, g=24)),
    ("abcdef-gfac-degb", dict(a=24, b=20, c=20, d=24, e=20, f=20, g=24)),
    ("abcdef-gfbc-dega", dict(a=24, b=20, c=20, d=24, e=20, f=20, g=24)),
]


def scaled_extents(extents, budget):
    """Extents shrunk by one common factor so the iteration space (product of all extents) is about
    `budget`; every extent stays ≥ 2 and the paper's ratios between labels are kept roughly."""
    total = math.prod(extents.values())
    factor = (budget / total) ** (1 / len(extents))
    return {k: max(2, round(e * factor)) for k, e in extents.items()}


def tccg_case(index, budget=20000, rng=None):
    """(pattern, A, B, einsum subscripts, extents) for TCCG contraction `index` (0-based): random int8
    operands in column-major layout (the paper's convention: first index fastest)."""
    pattern, extents = TCCG[index]
    ext = scaled_extents(extents, budget)
    sd, sa, sb = pattern.split("-")
    rng = rng if rng is not None else np.random.default_rng(index)
    a = np.asfortranarray(rng.integers(-128, 128, [ext[ch] for ch in sa], dtype=np.int8))
    b = np.asfortranarray(rng.integers(-128, 128, [ext[ch] for ch in sb], dtype=np.int8))
    return pattern, a, b, f"{sa},{sb}->{sd}", ext


def numpy_reference(subscripts, a, b):
    d = np.einsum(subscripts, a.astype(np.int64), b.astype(np.int64))
    return (d & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def _cpu_time(subscripts, a, b, repeats=3):
    best = math.inf
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.einsum(subscripts, a64, b64, optimize=True)
        best = min(best, time.perf_counter() - t0)
    return best


def _cases(quick):
    rng = np.random.default_rng(11)
    out = []
    n = 64 if quick else 128
    out.append((f"GEMM {n}³ (ik,kj->ij)", rng.integers(-128, 128, (n, n), dtype=np.int8),
                rng.integers(-128, 128, (n, n), dtype=np.int8), "ik,kj->ij"))
    nb = 4 if quick else 8
    out.append((f"batched {nb}×32³ (bik,bkj->bij)", rng.integers(-128, 128, (nb, 32, 32), dtype=np.int8),
                rng.integers(-128, 128, (nb, 32, 32), dtype=np.int8), "bik,bkj->bij"))
    # TCCG 1, 21 and 36; the last at a size that needs tiling (its D alone exceeds tensor memory).
    for index, budget in (((20, 2 ** 18),) if quick else ((0, 2 ** 20), (20, 2 ** 20), (35, 2 ** 21))):
        pattern, a, b, subs, ext = tccg_case(index, budget=budget)
        out.append((f"TCCG {index + 1} {pattern} ({'x'.join(str(ext[c]) for c in sorted(ext))})", a, b, subs))
    return out


def bench_tapp(quick=False, target="sim"):
    """Run the contraction set on the simulated device (or `target`, e.g. "emulator" — whose cycles are
    the ideal MACs / (R·C)); return bench.Result rows."""
    import tensornic
    from .engine import engine_sim_config
    from . import tapp

    results = []
    with tensornic.open(target, config=engine_sim_config()) as dev:
        eng = tapp._state(dev).engine
        clock, baud = dev.config.clock_hz, dev.config.baud
        for name, a, b, subs in _cases(quick):
            expected = numpy_reference(subs, a, b)
            # End to end: operands from the host, D back to the host.
            eng.clear_counters()
            stats = dev.link.stats
            before = stats.bytes_sent + stats.bytes_received
            d = dev.einsum(subs, a, b)
            link_bytes = stats.bytes_sent + stats.bytes_received - before
            if not np.array_equal(d, expected):
                raise AssertionError(f"{name}: the device's result differs from numpy's")
            end_to_end = eng.counters()
            ia, ib, io = tapp._parse(subs)
            plan = dev.tensor_product(tapp.TensorInfo.of(a), ia, tapp.TensorInfo.of(b), ib, None, None,
                                      tapp.TensorInfo.of(d), io)
            expected_bytes = plan._dry_run().blocking.wire_bytes
            # Resident: operands and D already in tensor memory; only the engine's work is counted. A
            # contraction too large for tensor memory reports its tiled end-to-end run instead.
            handles = []
            try:
                for x in (a, b):
                    handles.append(dev.upload(x))
                handles.append(tapp.empty(dev, d.shape, "int32"))
                eng.clear_counters()
                dev.einsum(subs, handles[0], handles[1], out=handles[2])
                resident, util_name = eng.counters(), "resident MAC utilization"
                if not np.array_equal(handles[2].download(), expected):
                    raise AssertionError(f"{name}: the resident result differs from numpy's")
            except tapp.TensorMemoryFull:
                resident, util_name = end_to_end, "MAC utilization (tiled, does not fit resident)"
            finally:
                for h in handles:
                    h.free()
            cycles = end_to_end["busy_cycles"]
            link_s = link_bytes * 10 / baud
            compute_s = cycles / clock
            total = link_s + compute_s
            results += [
                Result(f"tapp {name}: device cycles (end to end)", cycles, "cycles", None, command=CMD),
                Result(f"tapp {name}: {util_name}", resident["utilization"], "", 0.90, command=CMD),
                Result(f"tapp {name}: bytes over the host link (goal: planner's model)", link_bytes, "B",
                       expected_bytes, higher_is_better=False, command=CMD),
                Result(f"tapp {name}: modeled end-to-end time at {baud / 1e6:g} Mbaud", total, "s", None,
                       command=CMD),
                Result(f"tapp {name}: share of time transferring (rest computing)", link_s / total, "", None,
                       command=CMD),
                Result(f"tapp {name}: numpy einsum on the CPU (int64), reference", _cpu_time(subs, a, b), "s",
                       None, command=CMD),
            ]
    return results


def demo_contraction(console, dev=None):
    """`make demo` step: a batched contraction with permuted labels on the simulated device (or on `dev`
    when it has the contraction engine), checked against numpy, with its explain() output. Returns True
    when the result matches; raises TensornicError when it does not."""
    import contextlib

    import tensornic
    from .engine import engine_sim_config

    rng = np.random.default_rng(2026)
    # D[b, i, n] = Σ_k A[k, b, i] · B[b, n, k]: batch label b, free i (A) and n (B), contracted k; A's
    # contracted label is its slowest mode, B's its fastest, D's batch label its slowest.
    a = rng.integers(-128, 128, (40, 4, 24), dtype=np.int8)
    b = rng.integers(-128, 128, (4, 20, 40), dtype=np.int8)
    subscripts = "kbi,bnk->bin"
    console.print(f"[bold]contraction[/bold]: {subscripts} with A {a.shape}, B {b.shape} int8 on the contraction "
                  f"engine (the simulator's first run builds it: a few minutes)")
    if dev is not None and getattr(dev.config, "has_engine", False):
        owned = contextlib.nullcontext(dev)
    else:
        with console.status("opening the simulated device with the contraction engine"):
            owned = tensornic.open("sim", config=engine_sim_config())
    with owned as dev:
        from . import tapp
        eng = tapp._state(dev).engine
        eng.clear_counters()
        stats = dev.link.stats
        before = stats.bytes_sent + stats.bytes_received
        t0 = time.perf_counter()
        plan = dev.tensor_product(tapp.TensorInfo.of(a), "kbi", tapp.TensorInfo.of(b), "bnk", None, None,
                                  tapp.TensorInfo("int32", (4, 24, 20)), "bin")
        d = np.zeros((4, 24, 20), np.int32)
        plan.execute(1, a, b, 0, None, d)
        seconds = time.perf_counter() - t0
        link = stats.bytes_sent + stats.bytes_received - before
        counters = eng.counters()
        ok = np.array_equal(d, numpy_reference(subscripts, a, b))
        console.print(plan.explain(), markup=False, highlight=False, soft_wrap=True)
        verdict = "[green]matches numpy[/green]" if ok else "[red]DIFFERS from numpy[/red]"
        console.print(f"result {verdict}; {counters['mac_count']:,} MACs in {counters['busy_cycles']:,} engine "
                      f"cycles (utilization {counters['utilization']:.1%}), {link:,} bytes over the link, "
                      f"{seconds:.2f} s wall")
        if not ok:
            from .errors import TensornicError
            raise TensornicError("the contraction's result differs from numpy's")
    return ok
