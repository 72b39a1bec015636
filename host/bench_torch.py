"""Benchmarks of the DDP communication hook: bytes on the wire per training step, and modeled all-reduce time.

`bench_torch(quick=False)` returns `tensornic.bench.Result`s for each codec configuration (fp32 ring, bf16,
mxint8, bf16→mxint8, truncating mxint8) of `tensornic train-compare`'s MLP:
- payload bytes each rank sends per step at n = 4, **measured**: the hook's own count in a 4-process gloo run
  (tensornic.train_compare); the run must agree with `tensornic.torch.ring_bytes_per_rank` exactly, else
  AssertionError. The goal is the uncompressed ring's lower bound 2(n−1)/n · 4L bytes (Patarasuk & Yuan),
  so the ratio is the compression the wire format buys;
- the same at n = 32 from `ring_bytes_per_rank` (32 processes do not fit this machine; the formula is the one
  the n = 4 run just checked);
- the all-reduce time at n = 4 and 32 from the scaling model (`tensornic.scaling_model.allreduce_time`, the
  1 GbE NIC's parameters, frames and acknowledgements included), for the MLP's gradient and for one layer
  of Ma et al.'s 2048-wide MLP; the goal is the fp32 ring's modeled time, so the ratio is the speed-up;
- the wall time of a training step at n = 4 with the hook (numpy codecs on the CPU, 4 ranks sharing this
  machine's cores) against the same step with DDP's own all-reduce: the cost of emulating the NIC in software.

`python -m tensornic.bench_torch [--quick]` prints them.
"""

from .bench import Result

__all__ = ["bench_torch", "CONFIGS"]

COMMAND = "python -m tensornic.bench_torch"

#: (label, rs_codec, ag_codec): the hook's configurations of tensornic.train_compare.
CONFIGS = (("fp32 ring", "fp32", "fp32"), ("bf16", "bf16", "bf16"), ("mxint8", "mxint8", "mxint8"),
           ("bf16→mxint8", "bf16", "mxint8"), ("mxint8-trunc", "mxint8-trunc", "mxint8-trunc"))


def _measure(steps, mx_block):
    from .train_compare import Setup, compare
    setup = Setup(steps=steps, ranks=4, mx_block=mx_block,
                  configs=("DDP all-reduce",) + tuple(label for label, _, _ in CONFIGS))
    return setup, {r["label"]: r for r in compare(setup)}


def bench_torch(quick=False, mx_block=32) -> list[Result]:
    from .scaling_model import NicParams, PAPER_WORKLOAD, allreduce_time
    from .torch import ring_bytes_per_rank
    from .train_compare import parameter_count

    setup, measured = _measure(3 if quick else 20, mx_block)
    length = parameter_count(setup)
    results = []
    for n in (4, 32):
        bound = 2 * (n - 1) / n * 4 * length
        for label, rs, ag in CONFIGS:
            modeled = ring_bytes_per_rank(length, n, rs, ag, mx_block)
            if n == 4:
                sent = measured[label]["bytes_per_step"]
                if sent != modeled or not measured[label]["bytes_per_step_constant"]:
                    raise AssertionError(f"{label}: the hook sent {sent} bytes per step, the ring formula says "
                                         f"{modeled}")
                how = "measured"
            else:
                sent, how = modeled, "ring formula"
            results.append(Result(f"hook payload per rank per step, n={n}, {label} ({length:,}-value MLP, {how})",
                                  sent / 1024, "KiB", bound / 1024, higher_is_better=False, command=COMMAND))

    params = NicParams(mx_block=mx_block)
    sizes = (("MLP gradient", 4 * length), ("2048² layer", PAPER_WORKLOAD.layer_bytes))
    for what, size in sizes:
        for n in (4, 32):
            fp32 = allreduce_time(n, size, "fp32", "fp32", params).seconds
            for label, rs, ag in CONFIGS:
                seconds = allreduce_time(n, size, rs, ag, params).seconds
                results.append(Result(f"modeled all-reduce at 1 GbE, n={n}, {label}, {what} "
                                      f"({size / 2**20:.2f} MiB)", seconds * 1e3, "ms", fp32 * 1e3,
                                      higher_is_better=False, command=COMMAND))

    reference = measured["DDP all-reduce"]["seconds"] / setup.steps * 1e3
    for label, _, _ in CONFIGS:
        results.append(Result(f"training step wall time, n=4 gloo ranks on this machine, {label} hook "
                              "(goal: DDP's own all-reduce)", measured[label]["seconds"] / setup.steps * 1e3,
                              "ms", reference, higher_is_better=False, command=COMMAND))
    return results


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 training steps per configuration instead of 20")
    args = parser.parse_args(argv)
    for r in bench_torch(args.quick):
        goal = "" if r.goal is None else f"  (goal {r.goal:.6g} {r.unit}, ratio {r.ratio:.2f}×)"
        print(f"{r.name}: {r.value:.6g} {r.unit}{goal}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
