"""Host driver of the all-reduce NIC (docs/nic.md): `allreduce(dev, x, rs_codec=, ag_codec=)`.

The all-reduce is a collective: every rank calls it with its own vector, in the same order, and gets
the same result (bit-exact with `tensornic.emulator.allreduce`). The driver pads the vector as the
semantics say, writes it to the NIC's vector memory, starts the engine and reads the result back.

Vectors larger than the vector memory are done in pieces, each an all-reduce of the same slice of every
chunk: element e of chunk c is still reduced starting at rank c in ring order, and MXINT8 blocks stay
whole, so the result is the same bit for bit; the NIC buffers one piece, the host streams the pieces.

`allreduce_collective(devs, xs)` runs one all-reduce over several devices driven from this process (a
simulated cluster: `tensornic.sim.run_allreduce`), starting every node before waiting for any.
"""

import time

import numpy as np

from .errors import DeviceError, DeviceTimeout
from .rtl import nic_format as nf

__all__ = ["NicError", "NicTimeout", "NicMissing", "allreduce", "allreduce_collective", "configure",
           "nic_params", "eth_counters"]

WORD = 4


class NicError(DeviceError):
    """The NIC ended an operation with an error status; `code` is the nic_format.ErrorCode."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


class NicTimeout(NicError, DeviceTimeout):
    """A peer stayed silent: the NIC gave up after its watchdog timeout (ErrorCode.TIMEOUT), or the host
    waited longer than its own timeout for the NIC to finish."""


class NicMissing(DeviceError):
    """The device has no all-reduce NIC (its configuration has nic_vector_words = 0)."""


def nic_params(dev) -> dict:
    cfg = dev.memory_map.config
    if not getattr(cfg, "has_nic", False):
        raise NicMissing(f"{dev!r} has no all-reduce NIC; build the SoC with nic_vector_words > 0")
    window = cfg.nic_window
    return {"vector_words": cfg.nic_vector_words, "window": window, "max_payload": cfg.nic_max_payload,
            "mx_block": cfg.nic_mx_block, "max_slice_frames": (window - 1) // 3,
            "vector_base": dev.memory_map.region("nic_vector").base, "clock_hz": cfg.clock_hz}


def configure(dev, *, rank: int, world: int, macs=None, ips=None, udp_port: int = nf.DEFAULT_UDP_PORT,
              timeout_cycles: int = nf.DEFAULT_TIMEOUT, rto_cycles: int = nf.DEFAULT_RTO,
              ack_every: int = nf.DEFAULT_ACK_EVERY, ack_delay: int = nf.DEFAULT_ACK_DELAY):
    """Set this node's place in the ring, the ring's addresses and the protocol's timers (once per ring).

    `macs` and `ips`: one address per rank (int, 'aa:bb:cc:dd:ee:ff' / '10.0.0.1' strings or bytes);
    by default rank r is 02:74:6e:00:00:<r> and 10.0.0.<r + 1>. Every node listens on `udp_port`."""
    from .netframes import FrameBuildError, ip_int, mac_int
    nic_params(dev)
    if not isinstance(world, int) or not 2 <= world <= 255:
        raise ValueError(f"world must be an integer in 2…255, not {world!r}")
    if not isinstance(rank, int) or not 0 <= rank < world:
        raise ValueError(f"rank must be in 0…{world - 1}, not {rank!r}")
    if not 1 <= ack_every <= 255:
        raise ValueError(f"ack_every must be in 1…255, not {ack_every}")
    if not isinstance(udp_port, int) or not 1 <= udp_port <= 0xFFFF:
        raise ValueError(f"udp_port must be in 1…65535, not {udp_port!r}")
    try:
        macs = [nf.default_mac(r) for r in range(world)] if macs is None else [mac_int(a) for a in macs]
        ips = [nf.default_ip(r) for r in range(world)] if ips is None else [ip_int(a) for a in ips]
    except FrameBuildError as error:
        raise ValueError(f"ring addresses: {error}") from None
    for name, table in (("macs", macs), ("ips", ips)):
        if len(table) != world:
            raise ValueError(f"{name} needs one address per rank ({world}), not {len(table)}")
    if len(set(macs)) != world or len(set(ips)) != world:
        raise ValueError("every rank needs its own MAC and IPv4 address")
    succ, pred = (rank + 1) % world, (rank - 1) % world
    values = [("rank", rank), ("world", world), ("timeout", timeout_cycles), ("rto", rto_cycles),
              ("ack_every", ack_every), ("ack_delay", ack_delay), ("udp_port", udp_port)]
    for prefix, r in (("", rank), ("next_", succ), ("prev_", pred)):
        values += [(f"{prefix}mac_hi", macs[r] >> 32), (f"{prefix}mac_lo", macs[r] & 0xFFFF_FFFF),
                   (f"{prefix}ip", ips[r])]
    values += [("next_port", udp_port), ("prev_port", udp_port)]
    for name, value in values:
        dev.write_reg(f"nic.{name}", value)
    dev._nic_ring = (rank, world)
    dev._nic_job = 0          # every rank of the new ring numbers its operations from here, in step


def _ring(dev):
    ring = getattr(dev, "_nic_ring", None)
    if ring is None:
        raise NicError(f"{dev!r}: call tensornic.nic.configure(dev, rank=…, world=…) before an all-reduce")
    return ring


def _next_job(devs):
    """The job number of the next operation of these devices: one past the highest any of them used, so
    ranks that sat out some operations (a smaller ring in between) still agree with the others."""
    job = (max(getattr(dev, "_nic_job", 0) for dev in devs) % 0xFFFF) + 1
    for dev in devs:
        dev._nic_job = job
    return job


def _check_vector(x, rank):
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 1:
        raise TypeError(f"rank {rank}: expected a 1-D float32 numpy array, got "
                        f"{getattr(x, 'dtype', type(x).__name__)} with shape {getattr(x, 'shape', '?')}; "
                        "convert with np.asarray(x, dtype=np.float32).ravel()")
    if x.size == 0:
        raise ValueError(f"rank {rank}: the vector is empty")


def _pieces(padded_chunk, world, mx_block, vector_words):
    """(start, length) of each piece of every chunk: multiples of mx_block with world·length ≤ memory."""
    most = vector_words // world // mx_block * mx_block
    if most == 0:
        raise NicError(f"the NIC's vector memory ({vector_words} words) cannot hold {world} blocks of {mx_block}")
    return [(start, min(most, padded_chunk - start)) for start in range(0, padded_chunk, most)]


def _load(dev, piece, sub_plan, rs, ag, job):
    """Write the vector and the operation's registers; `control` is written separately (`_go`) so a
    collective can start its nodes close together."""
    p = nic_params(dev)
    dev.write(p["vector_base"], piece.astype("<f4").tobytes())
    for name, value in (("job", job), ("chunk", sub_plan.chunk), ("frame", sub_plan.frame),
                        ("frames_per_chunk", sub_plan.frames_per_chunk),
                        ("slice_frames", sub_plan.slice_frames), ("codecs", int(rs) | int(ag) << 2)):
        dev.write_reg(f"nic.{name}", value)


def _go(dev):
    dev.write_reg("nic.control", 1)


#: Cycles between reading the clock and the timed start, per node armed: room for the register writes
#: (the simulated cluster runs at full speed once one node is armed).
START_MARGIN_CYCLES = 25_000


def _go_together(devs):
    """Start every node on the same cycle (nodes that share one clock, as in the simulated cluster): set
    `start_at` a margin ahead of the cycle counter and arm them all."""
    at = (devs[0].read_reg("cycles_lo") + START_MARGIN_CYCLES * (len(devs) + 1)) & 0xFFFF_FFFF
    for dev in devs:
        dev.write_reg("nic.start_at", at)
    for dev in devs:
        dev.write_reg("nic.control", 2)


def _wait(dev, deadline):
    while True:
        status = dev.read_reg("nic.status")
        if status == nf.Status.DONE:
            return
        if status == nf.Status.ERROR:
            code = nf.ErrorCode(dev.read_reg("nic.error"))
            cls = NicTimeout if code == nf.ErrorCode.TIMEOUT else NicError
            what = {nf.ErrorCode.TIMEOUT: "a peer stayed silent past the NIC's timeout (dead link or a rank "
                                          "that did not join the all-reduce)",
                    nf.ErrorCode.BAD_CONFIG: "the NIC refused its configuration"}.get(code, code.name)
            raise cls(f"{dev!r}: all-reduce failed: {what}", code)
        if status == nf.Status.IDLE:
            raise NicError(f"{dev!r}: the NIC did not start")
        if time.monotonic() > deadline:
            raise NicTimeout(f"{dev!r}: the all-reduce did not finish within the host's timeout")


def _counters(dev):
    names = ("frames_sent", "retransmits", "frames_accepted", "frames_dropped", "acks_sent", "op_cycles",
             "bytes_sent")
    return {name: dev.read_reg(f"nic.{name}") for name in names}


def eth_counters(dev) -> dict:
    """The NIC's Ethernet/UDP counters since reset (frames sent/received, FCS and checksum errors, …)."""
    nic_params(dev)
    return {name: dev.read_reg(f"nic.{name}") for name in nf.ETH_COUNTER_REGISTERS}


def allreduce_collective(devs, xs, *, rs_codec="fp32", ag_codec="fp32", slice_frames=None, timeout=60.0,
                         configure_ring=True, shared_clock=False):
    """One all-reduce over `devs` (device i holds rank i) driven from this process.

    Returns (results, stats): every node's float32 result and, per node, the NIC counters summed over
    the pieces plus `cycles` (sum of the pieces' operation cycles) and `pieces`. With `shared_clock`
    (the nodes' cycle counters are one clock, as in the simulated cluster) every piece starts on the same
    cycle on every node (`nic.start_at`); `start_skew` is then the largest difference between the
    nodes' start cycles over the pieces (0 unless the arming took longer than the margin)."""
    devs = list(devs)
    n = len(devs)
    if len(xs) != n:
        raise ValueError(f"{n} devices need {n} vectors, not {len(xs)}")
    for rank, x in enumerate(xs):
        _check_vector(x, rank)
    length = xs[0].size
    if any(x.size != length for x in xs):
        raise ValueError(f"every rank must contribute the same length; got {[x.size for x in xs]}")
    params = [nic_params(dev) for dev in devs]
    p = params[0]
    if any(q["mx_block"] != p["mx_block"] or q["vector_words"] != p["vector_words"] for q in params):
        raise NicError("the NICs of a ring must share mx_block and vector size")
    if configure_ring:
        for rank, dev in enumerate(devs):
            if getattr(dev, "_nic_ring", None) != (rank, n):
                configure(dev, rank=rank, world=n)
    rs, ag = nf.codec_from_name(rs_codec), nf.codec_from_name(ag_codec)
    k = p["mx_block"]
    full = nf.plan(length, n, rs, ag, mx_block=k, max_payload=p["max_payload"])
    slices = slice_frames or p["max_slice_frames"]
    padded = np.zeros((n, full.padded), np.float32)
    for rank, x in enumerate(xs):
        padded[rank, :length] = x
    results = np.empty((n, full.padded), np.float32)
    stats = [dict(cycles=0, pieces=0, start_skew=0) for _ in range(n)]
    for start, size in _pieces(full.chunk, n, k, p["vector_words"]):
        sub = nf.plan(n * size, n, rs, ag, mx_block=k, max_payload=p["max_payload"], slice_frames=slices)
        index = np.concatenate([np.arange(c * full.chunk + start, c * full.chunk + start + size) for c in range(n)])
        job = _next_job(devs)
        for rank, dev in enumerate(devs):
            _load(dev, padded[rank, index], sub, rs, ag, job)
        if shared_clock:
            _go_together(devs)
        else:
            for dev in devs:
                _go(dev)
        deadline = time.monotonic() + timeout
        for rank, dev in enumerate(devs):
            _wait(dev, deadline)
        if shared_clock:
            starts = [dev.read_reg("nic.start_cycle") for dev in devs]
            relative = [(s - starts[0] + 2**31) % 2**32 - 2**31 for s in starts]    # the counter wraps
            skew = max(relative) - min(relative)
            for rank in range(n):
                stats[rank]["start_skew"] = max(stats[rank]["start_skew"], skew)
        for rank, dev in enumerate(devs):
            raw = dev.read(p["vector_base"], n * size * WORD)
            results[rank, index] = np.frombuffer(raw, "<f4")
            counters = _counters(dev)
            for name, value in counters.items():
                stats[rank][name] = stats[rank].get(name, 0) + value
            stats[rank]["cycles"] += counters["op_cycles"]
            stats[rank]["pieces"] += 1
    return [results[rank, :length].copy() for rank in range(n)], stats


def allreduce(dev, x, rs_codec="fp32", ag_codec="fp32", **options) -> np.ndarray:
    """This rank's part of a ring all-reduce (every rank calls it, in the same order): returns the
    reduced vector. `configure(dev, rank=, world=)` must have been called once."""
    rank, world = _ring(dev)
    _check_vector(x, rank)
    p = nic_params(dev)
    rs, ag = nf.codec_from_name(rs_codec), nf.codec_from_name(ag_codec)
    k = p["mx_block"]
    full = nf.plan(x.size, world, rs, ag, mx_block=k, max_payload=p["max_payload"])
    slices = options.pop("slice_frames", None) or p["max_slice_frames"]
    timeout = options.pop("timeout", 60.0)
    if options:
        raise TypeError(f"unknown options {sorted(options)}")
    padded = np.zeros(full.padded, np.float32)
    padded[:x.size] = x
    result = np.empty(full.padded, np.float32)
    for start, size in _pieces(full.chunk, world, k, p["vector_words"]):
        sub = nf.plan(world * size, world, rs, ag, mx_block=k, max_payload=p["max_payload"], slice_frames=slices)
        index = np.concatenate([np.arange(c * full.chunk + start, c * full.chunk + start + size)
                                for c in range(world)])
        _load(dev, padded[index], sub, rs, ag, _next_job([dev]))
        _go(dev)
        _wait(dev, time.monotonic() + timeout)
        result[index] = np.frombuffer(dev.read(p["vector_base"], world * size * WORD), "<f4")
    return result[:x.size].copy()
