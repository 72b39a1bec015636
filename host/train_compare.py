"""`tensornic train-compare`: what the NIC's wire formats do to training, on local gloo processes.

A small MLP learns a synthetic classification task (a fixed random "teacher" network labels Gaussian inputs;
everything is generated from the seed, nothing is downloaded) with `ranks` gloo processes on 127.0.0.1 and
DistributedDataParallel, once per configuration, from the same initial weights and the same batches:

    DDP all-reduce   gloo's own all-reduce (DDP's default), the reference
    fp32 ring        tensornic.torch.allreduce_hook("fp32", "fp32"): the NIC's ring, uncompressed
    bf16, mxint8     both phases compressed
    bf16→mxint8      BF16 reduce-scatter, MXINT8 all-gather
    mxint8-trunc     truncating MXINT8 in both phases (Ma et al.'s block format; comparison only)

It reports the final training loss, held-out loss and accuracy, the payload bytes each rank sent per step
(counted by the hook as it sends), whether the replicas ended bit-identical, and writes the loss curves to a
PNG (build/train-compare.png by default).

`compare(...)` runs it and returns the results; `add_arguments(parser)` and `run(args, console)` are the command.
"""

import dataclasses
import datetime
import math
import socket
import time
from pathlib import Path

__all__ = ["CONFIGS", "Setup", "make_dataset", "parameter_count", "require_torch", "compare", "plot",
           "add_arguments", "run"]

#: (label, rs_codec, ag_codec); None: DDP's default all-reduce.
CONFIGS = (
    ("DDP all-reduce", None, None),
    ("fp32 ring", "fp32", "fp32"),
    ("bf16", "bf16", "bf16"),
    ("mxint8", "mxint8", "mxint8"),
    ("bf16→mxint8", "bf16", "mxint8"),
    ("mxint8-trunc", "mxint8-trunc", "mxint8-trunc"),
)


@dataclasses.dataclass(frozen=True)
class Setup:
    """One comparison: every configuration trains the same model on the same batches for `steps` steps."""
    steps: int = 300
    ranks: int = 4
    seed: int = 0
    batch: int = 32                 # samples per rank per step
    lr: float = 0.05
    momentum: float = 0.9
    hidden: int = 128
    features: int = 32
    classes: int = 10
    samples: int = 8192             # training set; a held-out set of samples // 4 is drawn after it
    mx_block: int = 32
    configs: tuple = tuple(label for label, _, _ in CONFIGS)

    def __post_init__(self):
        for name in ("steps", "ranks", "batch", "hidden", "features", "classes", "samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if self.classes < 2:
            raise ValueError(f"classes must be at least 2, not {self.classes}")
        if self.samples < self.ranks * self.batch:
            raise ValueError(f"samples ({self.samples}) must hold at least one global batch "
                             f"(ranks × batch = {self.ranks * self.batch})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, not {self.lr!r}")
        known = [label for label, _, _ in CONFIGS]
        unknown = [c for c in self.configs if c not in known]
        if unknown or not self.configs:
            raise ValueError(f"unknown configuration(s) {unknown}; choose from {', '.join(known)}")


def make_dataset(setup: Setup):
    """(x_train, y_train, x_test, y_test) as torch tensors, a function of the setup's seed and sizes only:
    Gaussian inputs labelled by the argmax of a random two-layer tanh network plus a little noise."""
    import numpy as np
    import torch
    rng = np.random.default_rng(setup.seed)
    w1 = rng.standard_normal((setup.features, 64)) / math.sqrt(setup.features)
    w2 = rng.standard_normal((64, setup.classes)) / math.sqrt(64)
    total = setup.samples + setup.samples // 4
    x = rng.standard_normal((total, setup.features))
    logits = np.tanh(x @ w1) @ w2 + 0.1 * rng.standard_normal((total, setup.classes))
    x = torch.from_numpy(x.astype(np.float32))
    y = torch.from_numpy(logits.argmax(axis=1).astype(np.int64))
    return x[:setup.samples], y[:setup.samples], x[setup.samples:], y[setup.samples:]


def _model(setup: Setup):
    import torch
    torch.manual_seed(setup.seed)
    return torch.nn.Sequential(torch.nn.Linear(setup.features, setup.hidden), torch.nn.ReLU(),
                               torch.nn.Linear(setup.hidden, setup.hidden), torch.nn.ReLU(),
                               torch.nn.Linear(setup.hidden, setup.classes))


def parameter_count(setup: Setup) -> int:
    f, h, c = setup.features, setup.hidden, setup.classes
    return f * h + h + h * h + h + h * c + c


def _train_one(setup, label, rs, ag, rank, data):
    """Train one configuration on this rank; returns rank-0-ready results (losses are global means)."""
    import numpy as np
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from tensornic.torch import allreduce_hook

    x_train, y_train, x_test, y_test = data
    model = DDP(_model(setup))
    hook = None
    if rs is not None:
        hook = allreduce_hook(rs, ag, setup.mx_block)
        model.register_comm_hook(None, hook)
    optimizer = torch.optim.SGD(model.parameters(), lr=setup.lr, momentum=setup.momentum)
    order = torch.Generator().manual_seed(setup.seed + 1)      # the same batches for every configuration
    per_step = setup.ranks * setup.batch
    permutation, position = torch.randperm(setup.samples, generator=order), 0
    losses, step_bytes = [], []
    start = time.perf_counter()
    for _ in range(setup.steps):
        if position + per_step > setup.samples:
            permutation, position = torch.randperm(setup.samples, generator=order), 0
        mine = permutation[position + rank * setup.batch: position + (rank + 1) * setup.batch]
        position += per_step
        before = hook.bytes_sent if hook else 0
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x_train[mine]), y_train[mine])
        loss.backward()
        optimizer.step()
        step_bytes.append((hook.bytes_sent if hook else 0) - before)
        mean = loss.detach().clone()
        dist.all_reduce(mean)                       # for the report only: the global mean loss of the step
        losses.append(mean.item() / setup.ranks)
    seconds = time.perf_counter() - start

    params = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    copies = [torch.empty_like(params) for _ in range(setup.ranks)]
    dist.all_gather(copies, params)
    identical = all(np.array_equal(c.numpy().view(np.uint32), params.numpy().view(np.uint32)) for c in copies)
    with torch.no_grad():
        logits = model.module(x_test)
        test_loss = torch.nn.functional.cross_entropy(logits, y_test).item()
        accuracy = (logits.argmax(dim=1) == y_test).float().mean().item()
    tail = losses[-min(10, len(losses)):]
    return {
        "label": label, "rs_codec": rs, "ag_codec": ag, "losses": losses,
        "final_loss": sum(tail) / len(tail), "test_loss": test_loss, "test_accuracy": accuracy,
        "bytes_per_step": None if hook is None else sum(step_bytes) / len(step_bytes),
        "bytes_per_step_constant": hook is None or len(set(step_bytes)) == 1,
        "replicas_identical": identical, "seconds": seconds,
    }


def _worker(rank, setup_fields, port, queue):
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    setup = Setup(**setup_fields)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=setup.ranks,
                            timeout=datetime.timedelta(seconds=300))
    try:
        data = make_dataset(setup)
        for label, rs, ag in CONFIGS:
            if label not in setup.configs:
                continue
            result = _train_one(setup, label, rs, ag, rank, data)
            if rank == 0:
                queue.put(result)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (for a local torch.distributed rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_torch():
    """Raise a TensornicError naming the install command when PyTorch (with gloo) is missing."""
    from .errors import TensornicError
    try:
        import torch.distributed as dist
    except ImportError as exc:
        raise TensornicError(f"train-compare needs PyTorch ({exc}): pip install -e '.[torch]'") from None
    if not (dist.is_available() and dist.is_gloo_available()):
        raise TensornicError("this PyTorch build has no torch.distributed gloo backend, which train-compare uses")


def compare(setup: Setup = Setup(), progress=None) -> list[dict]:
    """Run every configuration of `setup` on `setup.ranks` local gloo processes; one result dict per
    configuration, in CONFIGS order. `progress(label, result)` is called as each one finishes."""
    require_torch()
    import torch.multiprocessing as mp
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    processes = mp.start_processes(_worker, args=(dataclasses.asdict(setup), free_port(), queue),
                                   nprocs=setup.ranks, join=False, start_method="spawn")
    results = []

    def drain():
        while not queue.empty():
            results.append(queue.get())
            if progress is not None:
                progress(results[-1]["label"], results[-1])

    while not processes.join(timeout=0.2):
        drain()
    drain()
    return results


def _smooth(values, window):
    """Trailing moving average (the first points average what exists so far)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot(results, setup: Setup, path, window: int = 15) -> Path:
    """Loss curves (left) and each configuration's loss minus the DDP reference's (right), both as trailing
    moving averages over `window` steps, written as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(12, 4.8))
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    colors = {label: f"C{i}" for i, (label, _, _) in enumerate(CONFIGS)}
    reference = next((r for r in results if r["rs_codec"] is None), None)
    for r in results:
        steps = range(1, len(r["losses"]) + 1)
        left.plot(steps, _smooth(r["losses"], window), label=r["label"], color=colors[r["label"]], linewidth=1.2)
        if reference is not None and r is not reference:
            difference = [a - b for a, b in zip(r["losses"], reference["losses"])]
            right.plot(steps, _smooth(difference, window), label=r["label"], color=colors[r["label"]],
                       linewidth=1.2)
    left.set(xlabel="step", ylabel=f"training loss (mean over ranks, {window}-step average)", yscale="log",
             title=f"MLP, {setup.ranks} gloo ranks, batch {setup.batch}/rank, MXINT8 k = {setup.mx_block}")
    right.set(xlabel="step", ylabel=f"loss − DDP all-reduce's loss ({window}-step average)",
              title="difference from DDP's default all-reduce")
    right.axhline(0, color="black", linewidth=0.5)
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def add_arguments(parser):
    defaults = Setup()
    parser.add_argument("--steps", type=int, default=defaults.steps, help=f"steps per run (default {defaults.steps})")
    parser.add_argument("--ranks", type=int, default=defaults.ranks, help="gloo processes (default 4)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="data, weights and batch order seed")
    parser.add_argument("--batch", type=int, default=defaults.batch, help="samples per rank per step")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="SGD learning rate (momentum 0.9)")
    parser.add_argument("--hidden", type=int, default=defaults.hidden, help="MLP hidden width")
    parser.add_argument("--mx-block", type=int, default=defaults.mx_block, choices=(16, 32),
                        help="MXINT8 block size (default 32)")
    parser.add_argument("--configs", default=None,
                        help="comma-separated subset of: " + ", ".join(label for label, _, _ in CONFIGS))
    parser.add_argument("--output", default="build/train-compare.png", help="where to write the loss plot")


def run(args, console):
    from rich.table import Table

    require_torch()
    configs = tuple(c.strip() for c in args.configs.split(",")) if args.configs else Setup().configs
    setup = Setup(steps=args.steps, ranks=args.ranks, seed=args.seed, batch=args.batch, lr=args.lr,
                  hidden=args.hidden, mx_block=args.mx_block, configs=configs)
    console.print(f"training a {setup.features}-{setup.hidden}-{setup.hidden}-{setup.classes} MLP "
                  f"({parameter_count(setup):,} parameters) for {setup.steps} steps on {setup.ranks} gloo ranks, "
                  f"{len(setup.configs)} configurations")
    with console.status("starting the ranks") as status:
        results = compare(setup, progress=lambda label, r: (
            console.print(f"  {label}: final loss {r['final_loss']:.4f} ({r['seconds']:.1f} s)"),
            status.update("training")))
    fp32_bytes = next((r["bytes_per_step"] for r in results if r["label"] == "fp32 ring"), None)
    table = Table(title=f"train-compare: {setup.steps} steps, {setup.ranks} ranks, seed {setup.seed}")
    for column in ("configuration", "final loss", "held-out loss", "accuracy", "bytes sent/step/rank",
                   "vs fp32 ring", "replicas identical", "time"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for r in results:
        sent = r["bytes_per_step"]
        table.add_row(
            r["label"], f"{r['final_loss']:.4f}", f"{r['test_loss']:.4f}", f"{100 * r['test_accuracy']:.1f} %",
            "(gloo's own)" if sent is None else f"{sent:,.0f}",
            "" if sent is None or not fp32_bytes else f"{fp32_bytes / sent:.2f}×",
            "yes" if r["replicas_identical"] else "[red]no[/red]", f"{r['seconds']:.1f} s")
    console.print(table)
    path = plot(results, setup, args.output)
    console.print(f"loss curves written to {path}")
    return 0 if all(r["replicas_identical"] for r in results) else 1
