"""The DDP hook handing its buckets to simulated NIC devices (`allreduce_hook(device=dev)`).

One gloo process per ring node, as with boards: the parent starts a simulated cluster of 3 SoCs with NICs
(sim/ring_cluster.py) and each rank opens its own node through that node's pseudo-terminal, configures its
ring position and trains one DDP step with the hook on the device. The gradients must be bit-identical to
the same step with the hook's software ring (itself bit-identical to the emulator, tests/test_torch_hook.py),
i.e. the NIC gateware computed exactly the all-reduce DDP expects. Marked slow: the cluster's Verilator build
takes minutes on a cold cache.
"""

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")

from tensornic.sim.ring_cluster import DEFAULT_LATENCY, _Model, build_cluster, cluster_config  # noqa: E402
from tensornic.train_compare import free_port  # noqa: E402

WORLD = 3

RANK = r"""
import json, sys
import numpy as np, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
import tensornic, tensornic.nic
from tensornic import torch as tn

rank, world, port, path, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)

def step(hook):
    torch.manual_seed(0)
    model = DDP(torch.nn.Sequential(torch.nn.Linear(40, 30), torch.nn.Tanh(), torch.nn.Linear(30, 5)))
    model.register_comm_hook(None, hook)
    x = torch.randn(8, 40, generator=torch.Generator().manual_seed(100 + rank))
    model(x).square().sum().backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()

result = {}
for rs, ag in (("fp32", "fp32"), ("bf16", "mxint8")):
    ring = step(tn.allreduce_hook(rs, ag))
    with tensornic.open(path, timeout=2.0) as dev:
        tensornic.nic.configure(dev, rank=rank, world=world)
        hook = tn.allreduce_hook(rs, ag, device=dev)
        nic = step(hook)
    result[f"{rs}/{ag}"] = {"identical": bool((ring.view(np.uint32) == nic.view(np.uint32)).all()),
                            "calls": hook.calls, "values": hook.values}
dist.destroy_process_group()
json.dump(result, open(out, "w"))
"""


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_hook_on_simulated_nic_devices(tmp_path):
    binary = build_cluster(WORLD, cluster_config(), DEFAULT_LATENCY)
    model = _Model(binary, WORLD, drop=0.0, corrupt=0.0, seed=1, dead=0, idle_cycles=1000, start_timeout=30.0)
    try:
        port = free_port()
        procs = [subprocess.Popen([sys.executable, "-c", RANK, str(rank), str(WORLD), str(port),
                                   model.paths[rank], str(tmp_path / f"rank{rank}.json")],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for rank in range(WORLD)]
        outputs = [proc.communicate(timeout=600)[0] for proc in procs]
        for rank, (proc, output) in enumerate(zip(procs, outputs)):
            assert proc.returncode == 0, f"rank {rank} failed:\n{output[-3000:]}"
    finally:
        model.stop()
    for rank in range(WORLD):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for codecs, r in result.items():
            assert r["identical"], f"rank {rank}, {codecs}: NIC gradients differ from the ring's"
            assert r["calls"] >= 1 and r["values"] == 40 * 30 + 30 + 30 * 5 + 5
