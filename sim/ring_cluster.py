"""The simulated cluster: n SoCs with the all-reduce NIC in one cycle-accurate Verilator model, wired in a
ring through message-level link models (rtl/ring_link.LinkModel: latency, seeded drop and corruption),
each node served on its own pseudo-terminal so the host talks to it through an ordinary `Device`.

    devs = tensornic.sim.cluster(4, latency=200, drop=0.01, corrupt=0.001, seed=1)
    results, stats = tensornic.sim.run_allreduce(devs, xs, rs_codec="fp32", ag_codec="mxint8")
    for dev in devs: dev.close()          # the last close stops the model

The model runs at full speed while any node has work (a host request, a busy NIC, a datagram on a link)
and otherwise sleeps like the single-device harness (sim/cluster_harness.cpp).
"""

import os
import select
import subprocess
import threading
import time
import weakref
from importlib import resources
from pathlib import Path

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect
from filelock import FileLock

from ..errors import SimulatorError
from ..rtl.ethernet import GmiiSignature
from ..rtl.memory_map import SocConfig
from ..transport import SerialTransport
from . import verilator as vl
from .device import _reap

__all__ = ["cluster", "cluster_config", "run_allreduce", "ClusterTop", "build_cluster"]

#: Link model latency in cycles by default: 1.6 µs at 125 MHz (PHYs and one switch hop).
DEFAULT_LATENCY = 200


def cluster_config(vector_words: int = 4096, **overrides) -> SocConfig:
    """The SoC of a cluster node: the spine at 125 MHz plus the NIC (small scratch memory)."""
    fields = dict(clock_hz=125_000_000, baud=3_125_000, scratch_bytes=4096, max_transfer=4096,
                  nic_vector_words=vector_words)
    fields.update(overrides)
    return SocConfig(**fields)


class ClusterTop(wiring.Component):
    """n SoCs (byte-port host links) whose NICs' GMII ports meet in a switch model (sim/gmii_switch.py)."""

    def __init__(self, n: int, config: SocConfig, latency: int = DEFAULT_LATENCY):
        if n < 2:
            raise ValueError(f"a cluster needs at least 2 nodes, not {n}")
        if not config.has_nic:
            raise ValueError("the cluster's SoC configuration has no NIC (nic_vector_words = 0)")
        self.n, self.config, self.latency = n, config, latency
        ports = {"seed": In(32), "load_seed": In(1), "drop": In(32), "corrupt": In(32), "dead": In(n),
                 "active": Out(1)}
        for i in range(n):
            ports[f"host_rx{i}"] = In(stream.Signature(8))
            ports[f"host_tx{i}"] = Out(stream.Signature(8))
            ports[f"receiving{i}"] = Out(1)
            ports[f"wire{i}"] = Out(GmiiSignature())      # what node i transmits (for the capture)
        super().__init__(ports)

    def elaborate(self, platform):
        from ..rtl.soc import Soc
        from ..rtl.gmii_switch import GmiiSwitch
        m = Module()
        m.submodules.switch = switch = GmiiSwitch(self.n, latency=self.latency)
        m.d.comb += [switch.seed.eq(self.seed), switch.load_seed.eq(self.load_seed), switch.drop.eq(self.drop),
                     switch.corrupt.eq(self.corrupt), switch.dead.eq(self.dead)]
        active = ~switch.idle
        for i in range(self.n):
            m.submodules[f"soc{i}"] = soc = Soc(self.config, byte_port=True)
            m.d.comb += [soc.use_byte_port.eq(1), soc.uart_rx.eq(1),
                         getattr(self, f"receiving{i}").eq(soc.link_receiving)]
            connect(m, wiring.flipped(getattr(self, f"host_rx{i}")), soc.host_rx)
            connect(m, soc.host_tx, wiring.flipped(getattr(self, f"host_tx{i}")))
            connect(m, soc.nic_gmii_tx, getattr(switch, f"rx{i}"))
            connect(m, getattr(switch, f"tx{i}"), soc.nic_gmii_rx)
            wire = getattr(self, f"wire{i}")
            m.d.comb += [wire.data.eq(soc.nic_gmii_tx.data), wire.en.eq(soc.nic_gmii_tx.en),
                         wire.er.eq(soc.nic_gmii_tx.er)]
            active = active | ~soc.link_idle | soc.nic_busy | soc.nic_gmii_rx.en
        m.d.comb += self.active.eq(active)
        return m


def _ports_header(n: int) -> str:
    lines = [f"#define CLUSTER_NODES {n}", "#define BIND_NODES(top, nodes) do { \\"]
    for i in range(n):
        for field, port in (("rx_valid", f"host_rx{i}___05Fvalid"), ("rx_payload", f"host_rx{i}___05Fpayload"),
                            ("rx_ready", f"host_rx{i}___05Fready"), ("tx_valid", f"host_tx{i}___05Fvalid"),
                            ("tx_payload", f"host_tx{i}___05Fpayload"), ("tx_ready", f"host_tx{i}___05Fready"),
                            ("receiving", f"receiving{i}"), ("wire_en", f"wire{i}___05Fen"),
                            ("wire_data", f"wire{i}___05Fdata")):
            lines.append(f"    (nodes)[{i}].{field} = &(top)->{port}; \\")
    lines.append("} while (0)")
    return "\n".join(lines) + "\n"


def _harness_source() -> str:
    return resources.files(__package__).joinpath("cluster_harness.cpp").read_text()


def build_cluster(n: int, config: SocConfig, latency: int = DEFAULT_LATENCY) -> Path:
    """Build (or reuse) the Verilated cluster + harness binary; return its path."""
    build_dir = vl.build_dir_for("cluster", f"cluster{n}", {"config": repr(config), "latency": latency})
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / "tensornic-cluster"
    with FileLock(str(build_dir / ".lock")):
        verilog = vl.to_verilog(ClusterTop(n, config, latency), "cluster")
        source = build_dir / "cluster.v"
        vl.write_if_changed(source, verilog)
        harness = build_dir / "cluster_harness.cpp"
        vl.write_if_changed(harness, _harness_source())
        header = build_dir / "cluster_ports.h"
        vl.write_if_changed(header, _ports_header(n))
        args = [vl.verilator_executable(), "--cc", "--exe", "--build", "-j", "2", "-Wall",
                *vl.lint_args(), "-O2", "--x-assign", "fast", "--x-initial", "fast",
                "--top-module", "cluster", "--Mdir", str(build_dir / "obj"), "-o", str(binary),
                "-CFLAGS", f"-O2 -I{build_dir}", str(source), str(harness)]
        vl.ensure_verilator_on_path()

        def build():
            log = build_dir / "build.log"
            with open(log, "w") as out:
                result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, cwd=build_dir)
            if result.returncode != 0 or not binary.exists():
                raise SimulatorError(f"Verilator could not build the cluster (log: {log}):\n"
                                     f"{log.read_text()[-3000:]}")

        vl.cached_build(build_dir, [verilog, _harness_source(), _ports_header(n), args,
                                    vl.verilator_version()], build)
    return binary


class _Model:
    """The harness process shared by the nodes' transports; stopped when the last one closes."""

    def __init__(self, binary, n, *, drop, corrupt, seed, dead, idle_cycles, start_timeout, pcap=None,
                 host_stall=0.0):
        self.log_path = binary.parent / f"harness-{os.getpid()}-{id(self)}.log"
        self.log = open(self.log_path, "w+")
        capture = ["--pcap", str(pcap)] if pcap is not None else []
        self.proc = subprocess.Popen(
            [str(binary), "--drop", str(min(int(drop * 2**32), 2**32 - 1)),
             "--corrupt", str(min(int(corrupt * 2**32), 2**32 - 1)), "--seed", str(seed & 0xFFFFFFFF),
             "--dead", str(dead), "--idle-cycles", str(idle_cycles),
             "--host-stall", str(min(int(host_stall * 256), 255)), *capture],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, start_new_session=True)
        self._finalizer = weakref.finalize(self, _reap, self.proc)
        self.open = 0
        self.lock = threading.Lock()
        self.paths = self._read_paths(n, start_timeout)

    def _read_paths(self, n, timeout):
        deadline = time.monotonic() + timeout
        text = b""
        while text.count(b"\n") < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                break
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                text += chunk
        lines = [line for line in text.decode().splitlines() if line.startswith("PTY ")]
        if len(lines) < n:
            self.stop()
            raise SimulatorError(f"the simulated cluster did not start ({len(lines)} of {n} ptys announced); "
                                 f"harness said: {self.last_words()!r}")
        return [line[4:].strip() for line in lines[:n]]

    def last_words(self):
        try:
            self.log.flush()
            return Path(self.log_path).read_text()[-2000:]
        except OSError:
            return ""

    def release(self):
        with self.lock:
            self.open -= 1
            last = self.open <= 0
        if last:
            self.stop()

    def stop(self):
        self._finalizer()
        try:
            self.log.close()
            Path(self.log_path).unlink(missing_ok=True)
        except OSError:
            pass


class ClusterTransport(SerialTransport):
    """SerialTransport to one node of a simulated cluster."""

    seconds_per_byte = 0.0

    def __init__(self, model: _Model, rank: int):
        self.model, self.rank = model, rank
        with model.lock:
            model.open += 1
        try:
            super().__init__(model.paths[rank], baud=3_000_000)
        except BaseException:
            model.release()
            raise

    def check_alive(self):
        code = self.model.proc.poll()
        if code is not None:
            raise SimulatorError(f"the simulated cluster exited with status {code}; "
                                 f"harness said: {self.model.last_words()!r}")

    def read(self, size, timeout):
        try:
            return super().read(size, timeout)
        except Exception:
            self.check_alive()
            raise

    def write(self, data):
        try:
            return super().write(data)
        except Exception:
            self.check_alive()
            raise

    def close(self):
        try:
            if getattr(self, "_serial", None) is not None:
                super().close()
        finally:
            if self.model is not None:
                model, self.model = self.model, None
                model.release()


def cluster(n: int, *, latency: int = DEFAULT_LATENCY, drop: float = 0.0, corrupt: float = 0.0, seed: int = 1,
            dead_links=(), vector_words: int = 4096, idle_cycles: int = 1000, start_timeout: float = 30.0,
            timeout: float = 2.0, pcap=None, host_stall: float = 0.0):
    """Start a simulated cluster of n nodes; return one `tensornic.Device` per node (rank i = node i).

    `latency` (cycles) of every link, `drop` and `corrupt` probabilities per datagram, `seed` of the fault
    injection, `dead_links`: nodes whose outgoing link drops everything. `pcap`: a path prefix; the frames
    node i transmits are written to `<pcap><i>.pcap` (complete once the cluster has stopped).
    `host_stall`: the probability that in a cycle a node's host byte stream pauses (random idle gaps into
    the SoC, backpressure out of it). Closing every device stops it."""
    from ..device import Device
    for name, p in (("drop", drop), ("corrupt", corrupt), ("host_stall", host_stall)):
        if not 0 <= p < 1:
            raise ValueError(f"{name} must be a probability in [0, 1), not {p!r}")
    if latency < 0:
        raise ValueError(f"latency must be ≥ 0 cycles, not {latency}")
    dead = 0
    for node in dead_links:
        if not 0 <= node < n:
            raise ValueError(f"dead link {node} is not a node of a {n}-node cluster")
        dead |= 1 << node
    config = cluster_config(vector_words)
    binary = build_cluster(n, config, latency)
    model = _Model(binary, n, drop=drop, corrupt=corrupt, seed=seed, dead=dead, idle_cycles=idle_cycles,
                   start_timeout=start_timeout, pcap=pcap, host_stall=host_stall)
    devs = []
    try:
        for rank in range(n):
            devs.append(Device(ClusterTransport(model, rank), timeout=timeout))
    except BaseException:
        for dev in devs:
            dev.close()
        model.stop()
        raise
    for rank, dev in enumerate(devs):
        dev.cluster_rank = rank
    return devs


def run_allreduce(devs, xs, rs_codec="fp32", ag_codec="fp32", **options):
    """The all-reduce of `xs` (one float32 vector per device, device i = rank i) on a simulated cluster:
    returns (results, stats) with every node's result and per-node statistics (see host/nic.py)."""
    from ..nic import allreduce_collective
    options.setdefault("shared_clock", True)      # one Verilator model: the nodes' counters are one clock
    return allreduce_collective(devs, xs, rs_codec=rs_codec, ag_codec=ag_codec, **options)
