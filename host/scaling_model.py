"""Analytical scaling model of the all-reduce NIC, its calibration, and the training speed-up it predicts.

docs/scaling-model.md states the equations and where every default comes from. In short:

- `allreduce_time(n, size_bytes, rs_codec, ag_codec, params)`: one ring all-reduce of `size_bytes` of FP32 on
  n NICs, in NIC clock cycles and seconds. Every quantity is one the hardware has (`NicParams`): link bytes
  per cycle, clock, frame payload and per-frame overheads (preamble/SFD, Ethernet, IPv4, UDP, FCS, gap, the
  tensornic header), acknowledgement frames, per-hop latency (link latency + pipeline depth), codec wire
  bytes per element, adder lanes, host-link bytes per cycle, the slice/ACK/window scheme, and a fixed
  per-operation overhead. The ring is evaluated frame by frame in the gateware's order (a max-plus
  recurrence over send, wire, link latency and receive; `_Schedule`), every frame costing the slowest of
  its wire, arithmetic and host-link time, so nic.md's link, adder and host-link bounds are all inside it;
  nic.md's step-synchronous formula is the 'chunk' mode and `ring_lower_bound`.
- `calibrate(measurements, params)`: fits the two free parameters (pipeline depth, so the per-hop
  latency, and the fixed overhead) to
  (n, S, codec, cycles) measurements of the cycle-accurate cluster simulation (weighted least squares on
  relative error) and reports the per-point error.
- `SoftwareRing`, `Workload`, `speedup(...)`: the training-iteration model T_iter = T_fwd + max(T_bwd,
  communication finished), per-layer all-reduces overlapped with back-propagation, against the paper's
  baseline (a host ring over the same network in FP32 on dedicated cores). `PAPER_*` are parameters of
  Ma et al.'s prototype; with them the model gives the shape of the paper's curves (1.6× at 6 nodes,
  2.5× at 32, about 1.4× at 4× the mini-batch).
- `add_arguments(parser)` / `run(args, console)`: the `tensornic model` command (a rich table and a
  matplotlib plot).
"""

import dataclasses
import math
import numbers

import numpy as np

from .errors import TensornicError
from .rtl.format_constants import MX_BLOCK_SIZES, MX_DEFAULT_BLOCK, mx_block_bytes
from .rtl.nic_format import HEADER_BYTES, frame_layout

__all__ = [
    "ScalingModelError", "NicParams", "LINKS", "AllreduceEstimate", "allreduce_time", "ring_lower_bound",
    "framing_efficiency", "compression_ratio", "codec_unit", "payload_bytes", "frame_wire_bytes",
    "Measurement", "Calibration", "calibrate",
    "SoftwareRing", "Workload", "IterationEstimate", "iteration_time", "nic_iteration", "software_iteration",
    "speedup", "paper_setup", "PAPER_WORKLOAD", "add_arguments", "run", "CODEC_NAMES",
]


class ScalingModelError(TensornicError, ValueError):
    """A parameter or measurement the model cannot use (the message says which and why)."""


# --- frame format constants (bytes on the wire) ----------------------------------------------------------------

PREAMBLE_SFD = 8            # 7 preamble bytes + start-of-frame delimiter
ETH_HEADER = 14             # destination, source, EtherType
IPV4_HEADER = 20            # no options
UDP_HEADER = 8
FCS = 4
INTER_FRAME_GAP = 12        # the minimum gap, in byte times
ETH_MIN_FRAME = 64          # header through FCS; shorter frames are padded
MAX_UDP_PAYLOAD = 1472      # MTU 1500 − IPv4 − UDP
PER_FRAME_OVERHEAD = PREAMBLE_SFD + ETH_HEADER + IPV4_HEADER + UDP_HEADER + FCS + INTER_FRAME_GAP   # 66

#: Codec names the model knows: the NIC's and the truncating comparison variant (same wire size as mxint8).
CODEC_NAMES = ("fp32", "bf16", "mxint8", "mxint8-trunc")


def codec_unit(codec: str, mx_block: int = MX_DEFAULT_BLOCK):
    """(elements, wire bytes) of the smallest unit a codec sends: one FP32 or BF16 value, or one MXINT8
    block (its scale byte and `mx_block` element bytes)."""
    if codec == "fp32":
        return 1, 4
    if codec == "bf16":
        return 1, 2
    if codec in ("mxint8", "mxint8-trunc"):
        if mx_block not in MX_BLOCK_SIZES:
            raise ScalingModelError(f"mx_block must be one of {MX_BLOCK_SIZES}, not {mx_block!r}")
        return mx_block, mx_block_bytes(mx_block)
    raise ScalingModelError(f"unknown codec {codec!r}; the model knows {', '.join(CODEC_NAMES)}")


def compression_ratio(codec: str, mx_block: int = MX_DEFAULT_BLOCK) -> float:
    """β: FP32 bytes per wire byte of a codec's payload (1, 2, 3.88 at k = 32, 3.76 at k = 16)."""
    elements, nbytes = codec_unit(codec, mx_block)
    return 4 * elements / nbytes


#: The header's `count` field is 16 bits and the gateware caps P at 0xFFFF // 4 elements.
MAX_FRAME_ELEMENTS = 0xFFFF // 4


def payload_bytes(elements: int, codec: str, mx_block: int = MX_DEFAULT_BLOCK) -> int:
    """Wire bytes of `elements` values in `codec` (MXINT8: whole blocks, one scale byte each)."""
    unit_elements, unit_bytes = codec_unit(codec, mx_block)
    return -(-elements // unit_elements) * unit_bytes


def frame_wire_bytes(data_bytes: int, header_bytes: int) -> int:
    """Byte times one frame carrying `data_bytes` of payload after an H-byte tensornic header takes on the
    link: preamble/SFD, Ethernet header, IPv4, UDP, H, data, padding to the 64-byte minimum, FCS, gap."""
    frame = max(ETH_HEADER + IPV4_HEADER + UDP_HEADER + header_bytes + data_bytes + FCS, ETH_MIN_FRAME)
    return PREAMBLE_SFD + frame + INTER_FRAME_GAP


def framing_efficiency(data_bytes: int, header_bytes: int = 0) -> float:
    """η: payload bytes / wire byte times of full frames (0.954 at 1472 bytes and H = 0, 0.795 at 256)."""
    return data_bytes / frame_wire_bytes(data_bytes, header_bytes)


# --- the NIC's parameters ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NicParams:
    """Everything the all-reduce time depends on, in the hardware's own units (cycles of the NIC clock).

    Defaults describe the 1 GbE design (GMII at 125 MHz); `NicParams.for_link` gives faster links. The
    per-hop latency and the fixed overhead are the free parameters `calibrate` fits; the others are set
    from the gateware's configuration.
    """
    clock_hz: float = 125e6
    link_bytes_per_cycle: float = 1.0       # GMII: 8 bits per cycle
    udp_payload_bytes: int = MAX_UDP_PAYLOAD  # per frame, the tensornic header included (jumbo: up to 8972)
    header_bytes: int = HEADER_BYTES        # H: the tensornic header (24 bytes)
    slice_frames: int | None = 4            # F: frames per slice (None: the whole chunk is one slice)
    frame_buffers: int = 2                  # times a datagram is buffered whole on a hop (UDP out, FCS in)
    switch_hops: int = 0                    # store-and-forward switches on a hop (each: whole frame, L, resend)
    frames_per_ack: int = 4                 # one acknowledgement frame per this many data frames (0: none)
    window_frames: int | None = 16          # frames sent ahead of the oldest unacknowledged one (None: no limit)
    acks_share_link: bool = True            # acks leave on the same port as data (one port per node)
    lanes: int = 1                          # FP32 adder/codec lanes: elements per cycle
    mx_block: int = MX_DEFAULT_BLOCK
    host_bytes_per_cycle: float = 4.0       # host link, per direction
    host_duplex: bool = False               # host reads and writes overlap (several blocks in flight)
    link_latency_cycles: float = 64.0       # PHY + cable, one way
    pipeline_depth_cycles: float = 64.0     # receive checks, decode, add, encode, framing
    fixed_cycles: float = 512.0             # per operation: start, host-link fill and drain
    forward: str = "frame"                  # 'frame': a frame is forwarded once it is in; 'chunk': whole steps

    def __post_init__(self):
        positive = ("clock_hz", "link_bytes_per_cycle", "host_bytes_per_cycle")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ScalingModelError(f"{name} must be positive, not {getattr(self, name)!r}")
        for name in ("lanes", "udp_payload_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ScalingModelError(f"{name} must be a positive integer, not {value!r}")
        if isinstance(self.header_bytes, bool) or not isinstance(self.header_bytes, int) or self.header_bytes < 0:
            raise ScalingModelError(f"header_bytes must be a non-negative integer, not {self.header_bytes!r}")
        if self.slice_frames is not None and (isinstance(self.slice_frames, bool)
                                              or not isinstance(self.slice_frames, int) or self.slice_frames < 1):
            raise ScalingModelError(f"slice_frames must be a positive integer or None, not {self.slice_frames!r}")
        if isinstance(self.frame_buffers, bool) or not isinstance(self.frame_buffers, int) or self.frame_buffers < 0:
            raise ScalingModelError(f"frame_buffers must be an integer ≥ 0, not {self.frame_buffers!r}")
        if isinstance(self.switch_hops, bool) or not isinstance(self.switch_hops, int) or self.switch_hops < 0:
            raise ScalingModelError(f"switch_hops must be an integer ≥ 0, not {self.switch_hops!r}")
        if self.window_frames is not None and (isinstance(self.window_frames, bool)
                                               or not isinstance(self.window_frames, int) or self.window_frames < 1):
            raise ScalingModelError(f"window_frames must be a positive integer or None, not {self.window_frames!r}")
        if not isinstance(self.frames_per_ack, int) or self.frames_per_ack < 0:
            raise ScalingModelError(f"frames_per_ack must be an integer ≥ 0 (0: no acks), not "
                                    f"{self.frames_per_ack!r}")
        if self.udp_payload_bytes > 8972:
            raise ScalingModelError(f"udp_payload_bytes={self.udp_payload_bytes} exceeds a 9000-byte jumbo MTU")
        if self.mx_block not in MX_BLOCK_SIZES:
            raise ScalingModelError(f"mx_block must be one of {MX_BLOCK_SIZES}, not {self.mx_block!r}")
        if self.forward not in ("frame", "chunk"):
            raise ScalingModelError(f"forward must be 'frame' or 'chunk', not {self.forward!r}")
        if self.link_latency_cycles < 0 or self.hop_latency_cycles < 0:
            raise ScalingModelError("link latency and per-hop latency (link + pipeline) must be ≥ 0, got "
                                    f"{self.link_latency_cycles} and {self.hop_latency_cycles}")
        for codec in ("fp32", "bf16", "mxint8"):
            self.data_capacity(codec)

    @property
    def hop_latency_cycles(self) -> float:
        """α: from the last byte of a frame leaving a node to its forwarded data leaving the next one,
        beyond the frame's own transmission time."""
        return self.link_latency_cycles + self.pipeline_depth_cycles

    @property
    def link_bytes_per_s(self) -> float:
        return self.link_bytes_per_cycle * self.clock_hz

    @property
    def host_bytes_per_s(self) -> float:
        return self.host_bytes_per_cycle * self.clock_hz

    def data_capacity(self, codec: str):
        """(elements, data bytes) of a full frame when both phases use `codec`."""
        elements = self.frame_elements(codec, codec)
        return elements, payload_bytes(elements, codec, self.mx_block)

    def frame_elements(self, rs_codec: str, ag_codec: str) -> int:
        """P, the elements of a full frame, the same in both phases (the gateware's rule, nic_format.plan):
        the most whole units that fit the UDP payload after the header in the wider of the two codecs,
        a unit being k elements when either codec is MXINT8 and one element otherwise."""
        mx = any(c in ("mxint8", "mxint8-trunc") for c in (rs_codec, ag_codec))
        unit = self.mx_block if mx else 1
        widest = max(payload_bytes(unit, c, self.mx_block) for c in (rs_codec, ag_codec))
        units = (self.udp_payload_bytes - self.header_bytes) // widest
        if units < 1:
            raise ScalingModelError(f"a {self.udp_payload_bytes}-byte UDP payload with a {self.header_bytes}-byte "
                                    f"header holds no {unit}-element unit of {rs_codec}/{ag_codec} ({widest} bytes)")
        return min(units * unit, MAX_FRAME_ELEMENTS // unit * unit)

    def ack_wire_bytes(self) -> float:
        """Byte times of acknowledgement traffic per data frame on the data's port (0 when acks use the
        other direction of the cable or there are none)."""
        if not self.frames_per_ack or not self.acks_share_link:
            return 0.0
        return frame_wire_bytes(0, self.header_bytes) / self.frames_per_ack

    @classmethod
    def for_link(cls, link: str, **overrides) -> "NicParams":
        """Parameters for one of `LINKS` ('1GbE', '10GbE', '40GbE', '100GbE'): its MAC interface's clock
        and width, enough lanes to keep up with MXINT8 at line rate, a host link 4 bytes per lane per
        cycle, and latencies converted from nanoseconds. `overrides` replace any field."""
        if link not in LINKS:
            raise ScalingModelError(f"unknown link {link!r}; choose one of {', '.join(LINKS)}")
        clock, width, latency_ns = LINKS[link]
        # MXINT8 k = 32 carries 32/33 element per byte: lanes ≥ width · 32/33 keep the adders off the path.
        lanes = max(1, math.ceil(width * MX_DEFAULT_BLOCK / mx_block_bytes(MX_DEFAULT_BLOCK)))
        fields = dict(clock_hz=clock, link_bytes_per_cycle=float(width), lanes=lanes,
                      host_bytes_per_cycle=4.0 * lanes, link_latency_cycles=latency_ns * 1e-9 * clock,
                      pipeline_depth_cycles=64.0, fixed_cycles=512.0)
        fields.update(overrides)
        return cls(**fields)


#: link name → (MAC clock in Hz, bytes per cycle, one-way link latency in ns: PHY pair + a few metres of cable).
#: 1 GbE: GMII; 10 GbE: XGMII 64 bits at 156.25 MHz; 40 GbE: XLGMII-like 256 bits at 156.25 MHz; 100 GbE:
#: 256 bits at 390.625 MHz (exactly the line rate).
LINKS = {
    "1GbE": (125e6, 1, 512.0),
    "10GbE": (156.25e6, 8, 300.0),
    "40GbE": (156.25e6, 32, 200.0),
    "100GbE": (390.625e6, 32, 200.0),
}


# --- one all-reduce ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AllreduceEstimate:
    """The model's answer for one all-reduce (times per node; all nodes finish together)."""
    n: int
    size_bytes: int                 # FP32 bytes of the tensor (before padding)
    rs_codec: str
    ag_codec: str
    cycles: float
    seconds: float
    ring_cycles: float              # the ring's share (cycles − fixed overhead)
    bandwidth_cycles: float         # the bandwidth path: Σ busy_s + α (frame forwarding)
    latency_cycles: float           # the latency path: Σ (trip_s + α) + busy_last (frame forwarding)
    bottleneck: str                 # 'hop latency', or what limits a full frame: 'link', 'adders', 'host link'
    frames_per_node: int            # data frames each node sends
    wire_bytes_per_node: float      # byte times on each node's transmit port, acks included
    bus_bandwidth: float            # B/s: 2(n−1)/n · S / t (NCCL's bus bandwidth, in FP32 bytes)

    @property
    def algorithm_bandwidth(self) -> float:
        """S / t (NCCL's algorithm bandwidth)."""
        return self.size_bytes / self.seconds if self.seconds else math.inf

    @property
    def effective_bandwidth(self) -> float:
        """The bus bandwidth in FP32 bytes: what an uncompressed ring would need from its links to finish
        as fast; above the link rate when the codecs compress."""
        return self.bus_bandwidth

    @property
    def wire_bandwidth(self) -> float:
        """Byte times each node actually puts on its port per second (frames, overheads and acks)."""
        return self.wire_bytes_per_node / self.seconds if self.seconds else 0.0


def _check_n_size(n, size_bytes):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ScalingModelError(f"n (nodes) must be a positive integer, not {n!r}")
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes <= 0 or size_bytes % 4:
        raise ScalingModelError(f"size must be a positive whole number of FP32 values in bytes (a multiple "
                                f"of 4), not {size_bytes!r}")


def _layout(chunk, rs_codec, ag_codec, p: NicParams, whole=False):
    """(P, F) as rtl/nic_format.plan sets them (`frame_layout`: full slices of equal frames); one slice of
    the largest frames per chunk when `whole` or `slice_frames` is None."""
    most = p.frame_elements(rs_codec, ag_codec)
    if whole or p.slice_frames is None:
        return most, max(1, -(-chunk // most))
    mx = any(c in ("mxint8", "mxint8-trunc") for c in (rs_codec, ag_codec))
    unit = p.mx_block if mx else 1
    unit_bytes = max(payload_bytes(unit, c, p.mx_block) for c in (rs_codec, ag_codec))
    return frame_layout(chunk, most, unit, unit_bytes, p.slice_frames)


def _frame_cost(elements, codec, p: NicParams):
    """(cycles, what limits them, wire byte times) of one frame of `elements` values in `codec`: the
    slowest of the link (frame and ack share), the adder lanes and the host link."""
    wire = frame_wire_bytes(payload_bytes(elements, codec, p.mx_block), p.header_bytes) + p.ack_wire_bytes()
    costs = {
        "link": wire / p.link_bytes_per_cycle,
        "adders": elements / p.lanes,
        # reduce-scatter reads the local slice from the host, all-gather writes the result to it; with
        # host_duplex the two directions work at once, so each step's host traffic costs half
        "host link": (2 if p.host_duplex else 4) * elements / p.host_bytes_per_cycle,
    }
    limit = max(costs, key=costs.get)
    return costs[limit], limit, wire


@dataclasses.dataclass(frozen=True)
class _RingTerms:
    """A closed-form view of the ring, per slice (rtl/nic_format.py's schedule: the chunk cut into frames of
    P elements, F frames a slice, each slice through its 2(n−1) steps): 'chunk' forwarding's time
    base + rate·α (every step waits for the whole previous one: Σ (busy + α)), and for 'frame' forwarding
    the two paths the estimate reports beside the schedule's time: the bandwidth path Σ busy + α and the
    latency path base + α + Σ weight·(trip + α), a step's trip being its first frame's cost plus
    `frame_buffers` × (H + payload) / link bytes per cycle."""
    base: float = 0.0
    rate: float = 0.0
    pieces: tuple = ()              # (weight, busy, trip of the first frame)
    busy: float = 0.0               # Σ busy over every step of every slice
    frames: int = 0
    wire: float = 0.0
    limit: str = "link"

    def bandwidth_path(self, alpha):
        return self.busy + self.rate * alpha if self.rate else 0.0

    def latency_path(self, alpha):
        return self.base + self.rate * alpha + sum(w * (c + alpha) for w, _, c in self.pieces)


def _ring_terms(n, size_bytes, rs_codec, ag_codec, p: NicParams) -> _RingTerms:
    if n < 2:
        return _RingTerms()
    elements = size_bytes // 4
    unit = n * p.mx_block                       # docs/allreduce.md: padded to a multiple of n·k
    chunk = -(-elements // unit) * unit // n
    frame, per_slice = _layout(chunk, rs_codec, ag_codec, p, whole=p.forward == "chunk")
    full, rest = divmod(chunk, frame)
    count_frames = full + (1 if rest else 0)
    slices = -(-count_frames // per_slice)
    # every slice is F full frames but the last, which may be shorter and end with the partial frame
    last_len = count_frames - per_slice * (slices - 1)
    last = {frame: last_len - (1 if rest else 0)}
    if rest:
        last[rest] = 1
    kinds = [({frame: per_slice}, slices - 1), (last, 1)]     # ({elements: frames}, how many such slices)
    steps_rs, steps_ag = n - 1, n - 1
    base = busy_total = wire = 0.0
    rate, frames, pieces = 0.0, 0, {}
    for group, count in kinds:
        group = {e: k for e, k in group.items() if k}
        if not count or not group:
            continue
        first = frame if frame in group else rest
        cost = {}                                 # codec → (busy, first frame's trip, wire) of one step
        for codec in (rs_codec, ag_codec):
            costs = {e: _frame_cost(e, codec, p) for e in group}
            # the first frame's trip: its own time, plus each whole-datagram buffering on the way
            buffered = p.frame_buffers * (p.header_bytes + payload_bytes(first, codec, p.mx_block))
            cost[codec] = (sum(k * costs[e][0] for e, k in group.items()),
                           costs[first][0] + buffered / p.link_bytes_per_cycle,
                           sum(k * costs[e][2] for e, k in group.items()))
        (b_rs, f_rs, w_rs), (b_ag, f_ag, w_ag) = cost[rs_codec], cost[ag_codec]
        wire += count * (steps_rs * w_rs + steps_ag * w_ag)
        frames += count * sum(group.values()) * (steps_rs + steps_ag)
        busy = steps_rs * b_rs + steps_ag * b_ag
        busy_total += count * busy
        if p.forward == "chunk":
            base += count * busy
            rate += count * (steps_rs + steps_ag)
            continue
        base += count * b_ag                      # the slice's last step (all-gather)
        for key, weight in (((b_rs, f_rs), steps_rs), ((b_ag, f_ag), steps_ag - 1)):
            if weight:
                pieces[key] = pieces.get(key, 0) + count * weight
    if p.forward == "frame":
        rate = 1.0
    limit = _frame_cost(frame if full else rest, rs_codec, p)[1]
    return _RingTerms(base, rate, tuple((w, b, c) for (b, c), w in pieces.items()), busy_total, frames, wire,
                      limit)


class _Schedule:
    """The frame-level schedule of one node, exactly as rtl/nic_format.py orders it: per slice, 2(n−1) steps
    of that slice's frames; by symmetry every node's frame q leaves, arrives and is taken at the same times,
    so the predecessor's frame q is modelled by the node's own. Each frame passes through four resources in
    order, each serving frames one at a time in sequence order (a max-plus recurrence):

    - send: the engine emits header + payload (H + D bytes at the link rate; a step-0 frame is encoded on the
      fly, so also e elements at `lanes` per cycle and its host traffic); a derived frame (step ≥ 1) can start
      once the frame it comes from (q − frames per slice) was taken and `pipeline_depth_cycles` later; with a
      window, not before frame q − window is acknowledged;
    - wire: the frame and its share of ACK frames at link_bytes_per_cycle, after the whole datagram is
      buffered when `frame_buffers` ≥ 1 (cut-through otherwise);
    - link latency;
    - receive: the engine takes H + D bytes (and decodes, adds, reads or writes the host at the element
      rates), after the whole frame is in when `frame_buffers` ≥ 2 (to check its FCS).

    An ACK leaves after every `frames_per_ack` taken frames and after the last one; it costs the acked
    node's sender H bytes, an 84-byte-time frame, the link latency and H bytes at the receiver. The
    operation ends when the last frame is taken (plus the pipeline) and the node's own frames are all
    acknowledged. `pipe` may be a numpy array (one schedule per value, for the calibration's grid)."""

    def __init__(self, n, size_bytes, rs_codec, ag_codec, p: NicParams):
        self.p, self.n = p, n
        elements = size_bytes // 4
        unit = n * p.mx_block                   # docs/allreduce.md: padded to a multiple of n·k
        chunk = -(-elements // unit) * unit // n
        frame, per_slice = _layout(chunk, rs_codec, ag_codec, p)
        full, rest = divmod(chunk, frame)
        sizes = [frame] * full + ([rest] if rest else [])
        self.slices = [sizes[i:i + per_slice] for i in range(0, len(sizes), per_slice)]
        self.codecs = [rs_codec] * (n - 1) + [ag_codec] * (n - 1)
        bpc = p.link_bytes_per_cycle
        ack = p.ack_wire_bytes()
        host = 2 if p.host_duplex else 4

        def times(e, codec, step):
            nbytes = p.header_bytes + payload_bytes(e, codec, p.mx_block)
            arith = max(e / p.lanes, host * e / p.host_bytes_per_cycle)
            send = max(nbytes / bpc, arith) if step == 0 else nbytes / bpc
            wire = (frame_wire_bytes(payload_bytes(e, codec, p.mx_block), p.header_bytes) + ack) / bpc
            return send, wire, max(nbytes / bpc, arith)

        self.costs = {(e, c, s == 0): times(e, c, s) for e in set(sizes) for s, c in enumerate(self.codecs)}
        self.ack_trip = (2 * p.header_bytes + (1 + p.switch_hops) * frame_wire_bytes(0, p.header_bytes)) / bpc
        self.frames = len(sizes) * len(self.codecs)

    def cycles(self, pipe, skip=True):
        """Cycles from start to the end of the operation (without `fixed_cycles`). Identical slices
        settle into a periodic regime; once three successive blocks of slices advanced every resource by
        the same amount, the rest of the identical slices are skipped by that amount (exact for a
        periodic max-plus recurrence)."""
        p = self.p
        if self.n < 2:
            return 0.0 * pipe
        vector = isinstance(pipe, np.ndarray)
        mx = np.maximum if vector else max
        latency = p.link_latency_cycles
        k = p.frames_per_ack
        window = p.window_frames if k else None
        steps = len(self.codecs)
        total = sum(len(f) for f in self.slices) * steps
        state = {"send": 0.0 * pipe, "wire": 0.0 * pipe, "take": 0.0 * pipe, "q": 0, "base": 0,
                 "switch": [0.0 * pipe] * p.switch_hops}
        taken = []                              # receive end of frames base, base+1, …

        def acked(j):                           # when the ACK covering frame j is back at its sender
            point = min((j // k + 1) * k - 1, total - 1)
            return taken[point - state["base"]] + pipe + self.ack_trip + latency

        def run(frames):
            send_end, wire_end, take_end, q = state["send"], state["wire"], state["take"], state["q"]
            switch = list(state["switch"])
            for step, codec in enumerate(self.codecs):
                for e in frames:
                    send, wire, take = self.costs[(e, codec, step == 0)]
                    start = send_end
                    if step:
                        start = mx(start, taken[q - len(frames) - state["base"]] + pipe)
                    if window and q >= window:
                        start = mx(start, acked(q - window))
                    send_end = start + send
                    wire_end = mx(mx(wire_end, send_end if p.frame_buffers else start) + wire, send_end)
                    arrived = wire_end if p.switch_hops else wire_end + latency
                    for hop in range(p.switch_hops):     # stored whole, held L, sent on at the link rate
                        switch[hop] = mx(switch[hop], arrived + latency) + wire
                        arrived = switch[hop]
                    take_end = (mx(take_end, arrived) + take if p.frame_buffers >= 2
                                else mx(take_end + take, arrived))
                    taken.append(take_end)
                    q += 1
            state.update(send=send_end, wire=wire_end, take=take_end, q=q, switch=switch)

        full, last = self.slices[:-1], self.slices[-1]
        if full:
            frames = full[0]
            per_slice = len(frames) * steps
            block = k // math.gcd(k, per_slice) if k else 1       # the ACK pattern repeats every block
            keep = (window or 0) + (k or 0) + per_slice + 1       # history a later frame can look back at
            marks, done = [], 0
            while done < len(full):
                run(frames)
                done += 1
                if done % block:
                    continue
                marks.append(np.array([state["send"], state["wire"], state["take"], *state["switch"]], dtype=float))
                remaining = (len(full) - done) // block
                if skip and len(marks) >= 4 and remaining:
                    d = [marks[-i] - marks[-i - 1] for i in (1, 2, 3)]
                    if all(np.allclose(d[0], x, rtol=1e-12, atol=1e-6) for x in d[1:]) and np.allclose(
                            d[0], d[0][0], rtol=1e-12, atol=1e-6):
                        shift = remaining * d[0][0]
                        tail = [t + shift for t in taken[-keep:]]
                        state["q"] += remaining * block * per_slice
                        state["base"] = state["q"] - len(tail)
                        taken[:] = tail
                        state.update(send=state["send"] + shift, wire=state["wire"] + shift,
                                     take=state["take"] + shift, switch=[t + shift for t in state["switch"]])
                        done += remaining * block
                        marks.clear()
        run(last)
        end = taken[-1] + pipe
        return mx(end, acked(total - 1)) if k else end


def _ring_model(n, size_bytes, rs_codec, ag_codec, p: NicParams, terms: _RingTerms | None = None):
    """The ring's cycles (without `fixed_cycles`) as a function of the pipeline depth (a number or a numpy
    array of them): the frame schedule for 'frame' forwarding, the closed form for 'chunk'."""
    if p.forward == "frame":
        return _Schedule(n, size_bytes, rs_codec, ag_codec, p).cycles
    t = terms or _ring_terms(n, size_bytes, rs_codec, ag_codec, p)
    return lambda pipe: t.base + t.rate * (p.link_latency_cycles + pipe)


def allreduce_time(n: int, size_bytes: int, rs_codec: str = "fp32", ag_codec: str | None = None,
                   params: NicParams = NicParams()) -> AllreduceEstimate:
    """The model of one all-reduce of `size_bytes` (FP32) on n NICs; `ag_codec` defaults to `rs_codec`.

    'frame' forwarding (the gateware's): cycles = fixed + the frame-level schedule of `_Schedule` (every
    frame through send, wire, link latency and receive, in the gateware's order, with ACKs and the
    window). 'chunk' forwarding: cycles = fixed + Σ_s (busy_s + α), nic.md's step-synchronous form.
    The estimate also reports two closed-form paths per slice (see `_RingTerms`): the bandwidth path
    Σ busy + α, busy_s = Σ over a step's frames of max(wire bytes / link bytes per cycle,
    elements / lanes, host bytes / host bytes per cycle), and the latency path Σ (trip_s + α) + busy_last.
    """
    ag_codec = rs_codec if ag_codec is None else ag_codec
    _check_n_size(n, size_bytes)
    for codec in (rs_codec, ag_codec):
        codec_unit(codec, params.mx_block)
    t = _ring_terms(n, size_bytes, rs_codec, ag_codec, params)
    alpha = params.hop_latency_cycles
    ring = _ring_model(n, size_bytes, rs_codec, ag_codec, params, t)(params.pipeline_depth_cycles)
    bandwidth, latency = t.bandwidth_path(alpha), t.latency_path(alpha)
    limit = "hop latency" if latency > bandwidth else t.limit
    cycles = ring + params.fixed_cycles
    seconds = cycles / params.clock_hz
    bus = 2 * (n - 1) / n * size_bytes / seconds
    return AllreduceEstimate(n, size_bytes, rs_codec, ag_codec, cycles, seconds, ring, bandwidth, latency,
                             limit, int(t.frames), t.wire, bus)


def ring_lower_bound(n: int, size_bytes: int, link_bytes_per_s: float, beta: float = 1.0, eta: float = 1.0,
                     alpha_s: float = 0.0) -> float:
    """../shared/nic.md's bound in seconds: 2(n−1)/n · S / (β·B·η) + 2(n−1)·α (Patarasuk & Yuan 2009)."""
    _check_n_size(n, size_bytes)
    if not (link_bytes_per_s > 0 and beta > 0 and 0 < eta <= 1 and alpha_s >= 0):
        raise ScalingModelError("need link bandwidth > 0, β > 0, 0 < η ≤ 1 and α ≥ 0")
    return 2 * (n - 1) / n * size_bytes / (beta * link_bytes_per_s * eta) + 2 * (n - 1) * alpha_s


# --- calibration ------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Measurement:
    """One measured all-reduce: n nodes, `size_bytes` of FP32, codecs (a name, or (rs, ag)), cycles."""
    n: int
    size_bytes: int
    codec: object
    cycles: float

    @property
    def codecs(self):
        if isinstance(self.codec, str):
            return self.codec, self.codec
        rs, ag = self.codec
        return rs, ag


@dataclasses.dataclass(frozen=True)
class Calibration:
    params: NicParams               # the input parameters with the fitted latency and overhead
    hop_latency_cycles: float
    fixed_cycles: float
    points: tuple                   # (Measurement, predicted cycles, relative error (pred − meas)/meas)

    @property
    def max_abs_error(self) -> float:
        return max(abs(e) for _, _, e in self.points)

    @property
    def rms_error(self) -> float:
        return math.sqrt(sum(e * e for _, _, e in self.points) / len(self.points))

    def error_by_n(self) -> dict:
        """n → the largest |relative error| over the measurements at n (the bench's "model error per n")."""
        out = {}
        for m, _, e in self.points:
            out[m.n] = max(out.get(m.n, 0.0), abs(e))
        return dict(sorted(out.items()))


def _as_measurement(m):
    if isinstance(m, Measurement):
        return m
    try:
        n, size, codec, cycles = m
    except (TypeError, ValueError):
        raise ScalingModelError(f"a measurement is (n, size_bytes, codec, cycles), not {m!r}") from None
    return Measurement(n, size, codec, cycles)


def calibrate(measurements, params: NicParams = NicParams()) -> Calibration:
    """Fit the pipeline depth (so the per-hop latency α = link latency + pipeline depth) and the fixed
    overhead to measured cycles, all other parameters held (the link latency is a known setting of the
    simulation).

    Least squares on the relative error Σ ((T(d) + C − y) / y)²: for each depth d the best C is
    closed-form (a weighted mean) and T(d) is piecewise linear and increasing, so a grid over d ∈ [0, max y]
    refined three times around its best point finds the minimum. Needs measurements at two or more n.
    """
    points = [_as_measurement(m) for m in measurements]
    if len(points) < 2:
        raise ScalingModelError(f"calibration needs at least 2 measurements, got {len(points)}")
    models = []
    for m in points:
        _check_n_size(m.n, m.size_bytes)
        if m.n < 2:
            raise ScalingModelError(f"a measurement at n = {m.n} has no ring to calibrate")
        if isinstance(m.cycles, bool) or not isinstance(m.cycles, numbers.Real) or not (
                m.cycles > 0 and math.isfinite(m.cycles)):
            raise ScalingModelError(f"measured cycles must be a positive number, not {m.cycles!r}")
        rs, ag = m.codecs
        for codec in (rs, ag):
            codec_unit(codec, params.mx_block)
        models.append(_ring_model(m.n, m.size_bytes, rs, ag, params))
    if len({m.n for m in points}) < 2:
        raise ScalingModelError("calibration needs measurements at two or more node counts to separate the "
                                "per-hop latency from the fixed overhead")
    y = np.array([float(m.cycles) for m in points])
    w2 = 1.0 / (y * y)

    def fit(depths):
        """(weighted squared relative error, best fixed overhead) for each depth of an array."""
        g = np.stack([np.broadcast_to(model(depths), depths.shape) for model in models], axis=1)
        c = ((y - g) * w2).sum(axis=1) / w2.sum()
        return (((g + c[:, None] - y) ** 2) * w2).sum(axis=1), c

    top = float(y.max())
    grid = np.concatenate([[0.0], top * np.logspace(-6, 0, 240)])
    for _ in range(4):
        errors, _ = fit(grid)
        best = int(np.argmin(errors))
        lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
        grid = np.linspace(lo, hi, 101)
    errors, fixed_values = fit(grid)
    best = int(np.argmin(errors))
    depth, fixed = float(grid[best]), float(fixed_values[best])
    fitted = dataclasses.replace(params, pipeline_depth_cycles=depth, fixed_cycles=fixed)
    rows = tuple((m, model(depth) + fixed, (model(depth) + fixed - m.cycles) / m.cycles)
                 for m, model in zip(points, models))
    return Calibration(fitted, fitted.hop_latency_cycles, fixed, rows)


# --- the software baseline and the training iteration -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SoftwareRing:
    """The paper's baseline: a ring all-reduce run by the hosts over the same network, in FP32, on cores
    set aside for communication (so compute runs on the others), through the kernel's TCP/IP stack.

    A step moves one chunk: t_step = α_sw + max(chunk / (B·η_sw), chunk / host_bytes_per_s), with η_sw the
    TCP/IPv4 framing efficiency at the MTU and host_bytes_per_s the rate at which the communication cores
    copy through the socket buffers and add (FP32 payload bytes per second)."""
    link_bytes_per_s: float
    hop_latency_s: float = 100e-6           # per step: syscalls, TCP/IP stack, wake-ups, step handshake
    host_bytes_per_s: float = 10e9          # copies + reduction on the communication cores
    mtu: int = 1500
    tcp_header_bytes: int = 32              # 20 + 12 (timestamps option)
    comm_cores: int = 8                     # cores the baseline sets aside for communication
    total_cores: int = 28

    def __post_init__(self):
        if not (self.link_bytes_per_s > 0 and self.host_bytes_per_s > 0 and self.hop_latency_s >= 0):
            raise ScalingModelError("the software ring needs link and host rates > 0 and a latency ≥ 0")
        if not 0 <= self.comm_cores < self.total_cores:
            raise ScalingModelError(f"comm_cores must be in [0, total_cores = {self.total_cores}), not "
                                    f"{self.comm_cores}")
        if not 0 < self.mtu - IPV4_HEADER - self.tcp_header_bytes:
            raise ScalingModelError(f"MTU {self.mtu} leaves no TCP payload")

    @property
    def framing_efficiency(self) -> float:
        payload = self.mtu - IPV4_HEADER - self.tcp_header_bytes
        return payload / (self.mtu + PREAMBLE_SFD + ETH_HEADER + FCS + INTER_FRAME_GAP)

    @property
    def compute_slowdown(self) -> float:
        """Compute time on the remaining cores relative to all of them."""
        return self.total_cores / (self.total_cores - self.comm_cores)

    def allreduce_seconds(self, n: int, size_bytes: int) -> float:
        _check_n_size(n, size_bytes)
        chunk = size_bytes / n
        step = self.hop_latency_s + max(chunk / (self.link_bytes_per_s * self.framing_efficiency),
                                        chunk / self.host_bytes_per_s)
        return 2 * (n - 1) * step


@dataclasses.dataclass(frozen=True)
class Workload:
    """A data-parallel training job: `layers` equal layers of `params_per_layer` FP32 weights, trained with
    `batch` samples per node, at `flops_per_s` on all of a node's cores (2·batch·params FLOP forward,
    twice that backward). `compute_s` overrides the per-iteration compute time (forward + backward)."""
    layers: int = 20
    params_per_layer: int = 2048 * 2048 + 2048
    batch: int = 448
    flops_per_s: float = 1.8e12
    compute_s: float | None = None

    def __post_init__(self):
        if self.layers < 1 or self.params_per_layer < 1 or self.batch < 1 or not self.flops_per_s > 0:
            raise ScalingModelError("a workload needs ≥ 1 layer, parameter and sample and a positive FLOP rate")
        if self.compute_s is not None and not self.compute_s > 0:
            raise ScalingModelError(f"compute_s must be positive, not {self.compute_s!r}")

    @property
    def forward_s(self) -> float:
        return self.total_compute_s / 3

    @property
    def backward_s(self) -> float:
        return 2 * self.total_compute_s / 3

    @property
    def total_compute_s(self) -> float:
        if self.compute_s is not None:
            return self.compute_s
        return 6 * self.batch * self.params_per_layer * self.layers / self.flops_per_s

    @property
    def layer_bytes(self) -> int:
        return 4 * self.params_per_layer


@dataclasses.dataclass(frozen=True)
class IterationEstimate:
    seconds: float
    forward_s: float
    backward_s: float
    allreduce_s: float              # all layers' all-reduces, back to back
    exposed_s: float                # communication still running after back-propagation ends

    @property
    def hidden_fraction(self) -> float:
        return 1 - self.exposed_s / self.allreduce_s if self.allreduce_s else 1.0


def iteration_time(workload: Workload, layer_allreduce_s: float, compute_scale: float = 1.0) -> IterationEstimate:
    """T_iter = T_fwd + max(T_bwd, t_comm): back-propagation produces the layers' gradients one by one
    (last layer first); each layer's all-reduce starts when its gradient exists and the previous all-reduce
    is done (one communication channel), so only the tail of the communication is exposed."""
    fwd = workload.forward_s * compute_scale
    bwd = workload.backward_s * compute_scale
    done = 0.0
    for layer in range(1, workload.layers + 1):
        done = max(done, bwd * layer / workload.layers) + layer_allreduce_s
    exposed = max(0.0, done - bwd)
    return IterationEstimate(fwd + bwd + exposed, fwd, bwd, layer_allreduce_s * workload.layers, exposed)


def nic_iteration(n, workload: Workload, params: NicParams, rs_codec="mxint8", ag_codec=None) -> IterationEstimate:
    """One iteration with the NIC doing the all-reduces: compute keeps every core."""
    return iteration_time(workload, allreduce_time(n, workload.layer_bytes, rs_codec, ag_codec, params).seconds)


def software_iteration(n, workload: Workload, baseline: SoftwareRing) -> IterationEstimate:
    """One iteration with the software ring: compute loses the communication cores."""
    return iteration_time(workload, baseline.allreduce_seconds(n, workload.layer_bytes),
                          baseline.compute_slowdown)


def speedup(n, workload: Workload, params: NicParams, baseline: SoftwareRing, rs_codec="mxint8",
            ag_codec=None) -> float:
    """Training speed-up of the NIC over the software ring at n nodes: T_iter(baseline) / T_iter(NIC)."""
    return (software_iteration(n, workload, baseline).seconds
            / nic_iteration(n, workload, params, rs_codec, ag_codec).seconds)


#: Ma et al.'s workload: a 20-layer, 2048-wide MLP, mini-batch 448 per node, on a 28-core Xeon 8280
#: (1.8 TFLOP/s of FP32 GEMM on all cores: about half the AVX-512 peak).
PAPER_WORKLOAD = Workload()


def paper_setup(link: str = "40GbE"):
    """(NicParams, SoftwareRing) of Ma et al.'s prototype on `link`: Arria 10 NIC with 16-element blocks and
    a PCIe Gen3 ×8 host link (≈ 6.5 GB/s of DMA); the baseline's host ring over the same switch."""
    nic = NicParams.for_link(link, mx_block=16)
    nic = dataclasses.replace(nic, host_bytes_per_cycle=6.5e9 / nic.clock_hz, host_duplex=True)
    return nic, SoftwareRing(link_bytes_per_s=nic.link_bytes_per_s)


# --- the `tensornic model` command ---------------------------------------------------------------------------------

def _size(text):
    units = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30,
             "gib": 1 << 30}
    t = text.strip().lower()
    number = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    try:
        value = int(float(number) * units[t[len(number):]])
    except (KeyError, ValueError):
        raise ScalingModelError(f"size {text!r}: use bytes with an optional K/M/G (binary) suffix, e.g. 64M") \
            from None
    return value


def _nodes(text):
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ScalingModelError(f"nodes {text!r}: a comma-separated list of integers, e.g. 2,4,8") from None
    if not values or values[0] < 2:
        raise ScalingModelError(f"nodes {text!r}: need node counts ≥ 2")
    return values


def add_arguments(parser):
    """The options of `tensornic model`."""
    parser.add_argument("--nodes", default="2,4,6,8,16,32,64",
                        help="comma-separated node counts (default 2,4,6,8,16,32,64)")
    parser.add_argument("--links", default=",".join(LINKS),
                        help=f"comma-separated link speeds among {', '.join(LINKS)} (default: all)")
    parser.add_argument("--size", default=None,
                        help="all-reduce size in FP32 bytes with K/M/G suffix (default: one layer of the "
                             "paper's MLP, 16 MiB)")
    parser.add_argument("--rs-codec", default="mxint8", choices=CODEC_NAMES, help="reduce-scatter codec")
    parser.add_argument("--ag-codec", default=None, choices=CODEC_NAMES,
                        help="all-gather codec (default: the reduce-scatter codec)")
    parser.add_argument("--mx-block", type=int, default=16, choices=MX_BLOCK_SIZES,
                        help="MXINT8 block size (default 16, as the paper's NIC)")
    parser.add_argument("--batch", type=int, default=PAPER_WORKLOAD.batch,
                        help="mini-batch per node of the paper's MLP (default 448)")
    parser.add_argument("--compute-ms", type=float, default=None,
                        help="compute time per iteration (forward + backward, all cores) in ms; overrides "
                             "--batch")
    parser.add_argument("--plot", default="build/model.png", help="PNG to write (default build/model.png)")
    parser.add_argument("--no-plot", action="store_true", help="print the table only")


def _table_rows(nodes, links, size, rs, ag, mx_block, workload):
    rows = []
    for link in links:
        params, baseline = paper_setup(link)
        params = dataclasses.replace(params, mx_block=mx_block)
        for n in nodes:
            fp32 = allreduce_time(n, size, "fp32", "fp32", params)
            comp = allreduce_time(n, size, rs, ag, params)
            sw = baseline.allreduce_seconds(n, size)
            rows.append(dict(link=link, n=n, fp32=fp32, comp=comp, sw=sw,
                             speedup=speedup(n, workload, params, baseline, rs, ag),
                             hidden=nic_iteration(n, workload, params, rs, ag).hidden_fraction))
    return rows


def _si(value, unit):
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "µ")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def plot_speedups(path, nodes, links, rs, ag, mx_block, workload):
    """Write the speed-up curves (per link; the paper's 40 GbE setup at 1× and 4× the mini-batch with the
    paper's reported points) and the bus bandwidth per link to a PNG."""
    try:
        import matplotlib
    except ImportError:
        raise ScalingModelError("the plot needs matplotlib: install tensornic[plot], or pass --no-plot") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pathlib import Path

    ns = sorted(set(range(2, max(max(nodes), 64) + 1, 2)) | {3, 5, 6, 7} | set(nodes))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for i, link in enumerate(links):
        params, baseline = paper_setup(link)
        params = dataclasses.replace(params, mx_block=mx_block)
        left.plot(ns, [speedup(n, workload, params, baseline, rs, ag) for n in ns], label=link)
        # thinner lines for later links: NIC curves that coincide (both PCIe-bound) stay visible
        right.plot(ns, [allreduce_time(n, workload.layer_bytes, rs, ag, params).bus_bandwidth / 1e9 for n in ns],
                   label=f"NIC {rs}/{ag or rs}, {link}", linewidth=3.0 - 0.6 * i)
        right.plot(ns, [2 * (n - 1) / n * workload.layer_bytes / baseline.allreduce_seconds(n, workload.layer_bytes)
                        / 1e9 for n in ns], linestyle=":", color=left.lines[-1].get_color())
    if "40GbE" in links:
        params, baseline = paper_setup("40GbE")
        params = dataclasses.replace(params, mx_block=mx_block)
        big = dataclasses.replace(workload, batch=4 * workload.batch,
                                  compute_s=None if workload.compute_s is None else 4 * workload.compute_s)
        left.plot(ns, [speedup(n, big, params, baseline, rs, ag) for n in ns], linestyle="--",
                  label="40GbE, 4× mini-batch")
        left.plot([6, 32], [1.6, 2.5], "ko", label="Ma et al. (measured 6, modeled 32)")
        left.plot([32], [1.4], "kx", label="Ma et al., 4× mini-batch")
    left.set(xlabel="nodes", ylabel="training speed-up over the software ring", title="Speed-up per iteration")
    left.grid(alpha=0.3)
    left.legend(fontsize=8, loc="upper left", ncol=2)
    right.set(xlabel="nodes", ylabel="bus bandwidth (GB/s of FP32)", yscale="log",
              title="All-reduce of one layer (dotted: software ring)")
    right.grid(alpha=0.3, which="both")
    right.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def run(args, console):
    """`tensornic model`: print the model's table and write the plot. Returns the exit status."""
    from rich.table import Table

    nodes = _nodes(args.nodes)
    links = [link.strip() for link in args.links.split(",") if link.strip()]
    for link in links:
        if link not in LINKS:
            raise ScalingModelError(f"unknown link {link!r}; choose among {', '.join(LINKS)}")
    if args.batch < 1:
        raise ScalingModelError(f"--batch must be ≥ 1, not {args.batch}")
    compute = None if args.compute_ms is None else args.compute_ms / 1e3
    workload = dataclasses.replace(PAPER_WORKLOAD, batch=args.batch, compute_s=compute)
    size = workload.layer_bytes if args.size is None else _size(args.size)
    _check_n_size(max(nodes), size)
    rs, ag = args.rs_codec, args.ag_codec or args.rs_codec

    title = (f"all-reduce of {size / 2**20:.2f} MiB: NIC fp32 and {rs}/{ag} (k = {args.mx_block}) vs the "
             f"software ring; training speed-up for a {workload.layers}-layer MLP, "
             f"{workload.total_compute_s * 1e3:.1f} ms compute per iteration")
    table = Table(title=title)
    for column in ("link", "n", "NIC fp32", f"NIC {rs}/{ag}", "bus BW", "limit", "SW ring", "speed-up",
                   "hidden"):
        table.add_column(column, justify="left" if column in ("link", "limit") else "right")
    for r in _table_rows(nodes, links, size, rs, ag, args.mx_block, workload):
        table.add_row(r["link"], str(r["n"]), _si(r["fp32"].seconds, "s"), _si(r["comp"].seconds, "s"),
                      _si(r["comp"].bus_bandwidth, "B/s"), r["comp"].bottleneck, _si(r["sw"], "s"),
                      f"{r['speedup']:.2f}×", f"{100 * r['hidden']:.0f} %")
    console.print(table)
    if not args.no_plot:
        out = plot_speedups(args.plot, nodes, links, rs, ag, args.mx_block, workload)
        console.print(f"plot written to {out}")
    return 0


if __name__ == "__main__":
    import argparse
    import sys
    from rich.console import Console

    _parser = argparse.ArgumentParser(prog="python -m tensornic.scaling_model", description=__doc__.split("\n")[0])
    add_arguments(_parser)
    _console = Console()
    try:
        sys.exit(run(_parser.parse_args(), _console))
    except ScalingModelError as exc:
        _console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
