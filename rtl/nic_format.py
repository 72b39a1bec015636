"""The tensornic ring protocol: the header carried at the start of every UDP payload, the frame schedule
of the ring all-reduce, and the engine's status and error codes — one declaration for gateware and host.

Header (`HEADER_LAYOUT`, `HEADER_BYTES` = 24): the little-endian bytes of the layout's bit pattern (byte 0
holds bits 0…7, so every multi-byte field is little-endian on the wire). DATA frames carry `length` payload
bytes after it; ACK frames carry none and put the receiver's next expected sequence number in `seq`.

Schedule (see docs/nic.md): each chunk (C elements) is cut into frames of at most P elements; F
consecutive frames form a slice; per slice the ring runs 2(n−1) steps (n−1 reduce-scatter, n−1 all-gather)
of one frame per slice frame. Sequence numbers count a node's DATA frames to its successor in that order,
so the frame with sequence q at step s ≥ 1 is derived from the frame the node received with sequence
q − (frames in the slice), and step-0 frames come from the node's own vector.
"""

import enum
from dataclasses import dataclass

from amaranth.hdl import unsigned
from amaranth.lib import data

from .format_constants import MX_BLOCK_SIZES, MX_DEFAULT_BLOCK

__all__ = [
    "MAGIC", "VERSION", "HEADER_LAYOUT", "HEADER_BYTES", "Kind", "Codec", "Status", "ErrorCode",
    "CODEC_NAMES", "codec_from_name", "payload_bytes", "pack_header", "unpack_header", "FrameSlot",
    "RingPlan", "plan", "frame_layout", "MIN_FRAME_DATA", "ProtocolError", "DEFAULT_MAX_PAYLOAD",
    "UDP_IP_ETH_OVERHEAD", "NIC_REGISTERS", "ETH_COUNTER_REGISTERS", "DEFAULT_UDP_PORT", "default_mac", "default_ip",
]

MAGIC = 0x4E54           # "TN" on the wire (little-endian)
VERSION = 1
#: The largest UDP payload of a standard 1500-byte MTU frame.
DEFAULT_MAX_PAYLOAD = 1472
#: Bytes on a 1 GbE wire per datagram besides its UDP payload: preamble+SFD 8, Ethernet header 14,
#: IPv4 20, UDP 8, FCS 4, inter-frame gap 12.
UDP_IP_ETH_OVERHEAD = 8 + 14 + 20 + 8 + 4 + 12
#: Smallest Ethernet frame (header to FCS); shorter frames are padded.
ETH_MIN_FRAME = 64


class ProtocolError(ValueError):
    """A header or a ring plan that the protocol does not allow."""


class Kind(enum.IntEnum):
    DATA = 1
    ACK = 2


class Codec(enum.IntEnum):
    FP32 = 0
    BF16 = 1
    MXINT8 = 2


CODEC_NAMES = {"fp32": Codec.FP32, "bf16": Codec.BF16, "mxint8": Codec.MXINT8}


class Status(enum.IntEnum):
    """The engine's `status` output."""
    IDLE = 0
    BUSY = 1
    DONE = 2
    ERROR = 3


class ErrorCode(enum.IntEnum):
    """Why an operation ended in Status.ERROR."""
    NONE = 0
    TIMEOUT = 1          # no progress (no frame accepted, no acknowledgement) for `timeout` cycles
    BAD_CONFIG = 2       # world < 2, rank ≥ world, zero sizes, or a vector larger than the memory


HEADER_LAYOUT = data.StructLayout({
    "magic":   unsigned(16),
    "version": unsigned(8),
    "kind":    unsigned(8),
    "job":     unsigned(16),
    "source":  unsigned(8),   # sender's rank
    "codec":   unsigned(8),
    "seq":     unsigned(32),  # DATA: the frame's sequence number; ACK: the next sequence number expected
    "phase":   unsigned(8),   # 0 reduce-scatter, 1 all-gather
    "step":    unsigned(8),   # step within the phase
    "chunk":   unsigned(16),
    "length":  unsigned(16),  # payload bytes after the header
    "offset":  unsigned(32),  # element index of the payload's first element in the (padded) vector
    "count":   unsigned(16),  # elements in the payload
})
HEADER_BYTES = HEADER_LAYOUT.size // 8
assert HEADER_LAYOUT.size % 8 == 0 and HEADER_BYTES == 24


def codec_from_name(name) -> Codec:
    if isinstance(name, Codec):
        return name
    try:
        return CODEC_NAMES[name]
    except (KeyError, TypeError):
        raise ProtocolError(f"unknown codec {name!r}; the NIC's codecs are {', '.join(CODEC_NAMES)}") from None


def payload_bytes(count: int, codec, mx_block: int = MX_DEFAULT_BLOCK) -> int:
    """Wire bytes of `count` elements in `codec` (MXINT8: one scale byte per block of `mx_block`)."""
    codec = Codec(codec)
    if codec == Codec.FP32:
        return 4 * count
    if codec == Codec.BF16:
        return 2 * count
    if count % mx_block:
        raise ProtocolError(f"MXINT8 payloads hold whole blocks of {mx_block}, not {count} elements")
    return count + count // mx_block


def pack_header(**fields) -> bytes:
    """The header's wire bytes; missing fields are zero, `magic` and `version` default to the protocol's."""
    fields.setdefault("magic", MAGIC)
    fields.setdefault("version", VERSION)
    unknown = set(fields) - {name for name, _ in HEADER_LAYOUT}
    if unknown:
        raise ProtocolError(f"unknown header fields {sorted(unknown)}")
    value = HEADER_LAYOUT.const(fields).as_value().value
    return value.to_bytes(HEADER_BYTES, "little")


def unpack_header(raw: bytes) -> dict:
    """Fields of a header from the first HEADER_BYTES of `raw`; raises ProtocolError on a bad magic/version."""
    if len(raw) < HEADER_BYTES:
        raise ProtocolError(f"a tensornic header is {HEADER_BYTES} bytes, got {len(raw)}")
    value = int.from_bytes(bytes(raw[:HEADER_BYTES]), "little")
    fields = {}
    for name, field in HEADER_LAYOUT:
        fields[name] = (value >> field.offset) & ((1 << field.shape.width) - 1)
    if fields["magic"] != MAGIC or fields["version"] != VERSION:
        raise ProtocolError(f"not a tensornic v{VERSION} header: magic 0x{fields['magic']:04x}, "
                            f"version {fields['version']}")
    return fields


@dataclass(frozen=True)
class FrameSlot:
    """One DATA frame of a node's schedule."""
    seq: int
    slice: int
    step: int           # 0 … 2(n−1)−1: reduce-scatter steps first
    index: int          # frame index within the slice
    chunk: int
    offset: int         # element index in the padded vector
    count: int
    phase: int          # 0 reduce-scatter, 1 all-gather
    codec: Codec
    length: int         # payload bytes


@dataclass(frozen=True)
class RingPlan:
    """Sizes of one all-reduce: what the host writes to the engine's registers."""
    world: int
    length: int          # elements per rank (unpadded)
    padded: int          # multiple of world · mx_block
    chunk: int           # C = padded / world elements
    frame: int           # P: elements per frame
    slice_frames: int    # F: frames per slice
    rs_codec: Codec
    ag_codec: Codec
    mx_block: int

    @property
    def frames_per_chunk(self) -> int:
        return -(-self.chunk // self.frame)

    @property
    def steps(self) -> int:
        return 2 * (self.world - 1)

    def frames(self, rank: int):
        """The DATA frames `rank` sends to its successor, in sequence order."""
        n, seq = self.world, 0
        for first in range(0, self.frames_per_chunk, self.slice_frames):
            count_frames = min(self.slice_frames, self.frames_per_chunk - first)
            for step in range(self.steps):
                reduce = step < n - 1
                chunk = (rank - step) % n           # the chunk moves back by one every step
                codec = self.rs_codec if reduce else self.ag_codec
                for index in range(count_frames):
                    start = (first + index) * self.frame
                    count = min(self.frame, self.chunk - start)
                    yield FrameSlot(seq, first // self.slice_frames, step, index, chunk,
                                    chunk * self.chunk + start, count, 0 if reduce else 1, codec,
                                    payload_bytes(count, codec, self.mx_block))
                    seq += 1

    @property
    def frame_count(self) -> int:
        return self.steps * self.frames_per_chunk

    def wire_bytes(self, rank: int = 0) -> int:
        """Bytes a node puts on its link for the DATA frames (headers and Ethernet framing included)."""
        total = 0
        for frame in self.frames(rank):
            datagram = HEADER_BYTES + frame.length
            total += max(datagram + 8 + 20 + 14 + 4, ETH_MIN_FRAME) + 8 + 12
        return total


def plan(length: int, world: int, rs_codec="fp32", ag_codec="fp32", *, mx_block: int = MX_DEFAULT_BLOCK,
         max_payload: int = DEFAULT_MAX_PAYLOAD, slice_frames: int = 4) -> RingPlan:
    """The frame sizes for an all-reduce of `length` elements per rank over `world` ranks: the largest
    frame whose payload (in the wider of the two codecs) fits `max_payload` bytes after the header,
    a multiple of `mx_block` when either codec is MXINT8, or smaller so that every slice of at most
    `slice_frames` frames is full (`frame_layout`)."""
    if isinstance(world, bool) or not isinstance(world, int) or world < 2:
        raise ProtocolError(f"a ring needs at least 2 ranks, not {world!r}")
    if world > 255:
        raise ProtocolError(f"at most 255 ranks fit the header, not {world}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ProtocolError(f"length must be a positive number of elements, not {length!r}")
    if mx_block not in MX_BLOCK_SIZES:
        raise ProtocolError(f"mx_block must be one of {MX_BLOCK_SIZES}, not {mx_block!r}")
    if slice_frames < 1:
        raise ProtocolError(f"slice_frames must be at least 1, not {slice_frames}")
    rs, ag = codec_from_name(rs_codec), codec_from_name(ag_codec)
    room = max_payload - HEADER_BYTES
    unit = mx_block if Codec.MXINT8 in (rs, ag) else 1
    frame = min(room // max(_bytes_per_unit(c, unit, mx_block) for c in (rs, ag)) * unit, 0xFFFF // 4)
    if frame < unit:
        raise ProtocolError(f"max_payload {max_payload} leaves no room for one element after the header")
    padded = -(-length // (world * mx_block)) * world * mx_block
    chunk = padded // world
    unit_bytes = max(_bytes_per_unit(c, unit, mx_block) for c in (rs, ag))
    frame, slice_frames = frame_layout(chunk, frame, unit, unit_bytes, slice_frames)
    return RingPlan(world, length, padded, chunk, frame, slice_frames, rs, ag, mx_block)


#: Frames carry at least this many payload bytes when the chunk is cut finer than its largest frames
#: (below it a frame's fixed cost, about 90 byte times of headers, framing and gap, dominates).
MIN_FRAME_DATA = 256


def frame_layout(chunk: int, most: int, unit: int, unit_bytes: int, slice_frames: int) -> tuple:
    """(P, F): elements per frame and frames per slice for a chunk of `chunk` elements, frames of at most
    `most` elements (a multiple of `unit`, `unit_bytes` bytes per unit on the wire in the wider codec) and
    slices of at most `slice_frames` frames.

    Every slice is filled: the chunk is cut into slices × F frames of equal size rather than into
    frames as large as possible (23 full-size frames at F = 5 become 25 slightly smaller ones, not
    5 + 5 + 5 + 5 + 3), because a step of a slice takes F frame times while a frame needs about four
    frame times plus the switch to reach the next node's engine: a short slice stalls every step of it.
    Smaller frames also shorten that trip. Frames stay above MIN_FRAME_DATA bytes."""
    units = -(-chunk // unit)
    most_units = most // unit
    frames = -(-units // most_units)
    slices = -(-frames // slice_frames)
    least = -(-MIN_FRAME_DATA // unit_bytes)            # units in the smallest frame worth sending
    target = max(frames, min(slices * slice_frames, units // least))
    per = -(-units // target)
    frames = -(-units // per)
    slices = -(-frames // slice_frames)
    return per * unit, -(-frames // slices)


def _bytes_per_unit(codec, unit, mx_block):
    if codec == Codec.MXINT8:
        return unit + 1                      # unit == mx_block here
    return unit * (4 if codec == Codec.FP32 else 2)


#: The NIC's registers in address order: (name, access, description). rtl/memory_map.py turns them into
#: Register objects; rtl/ring_nic.NicCore drives them; host/nic.py reads and writes them by name.
NIC_REGISTERS = (
    ("rank", "rw", "This node's rank (0 … world − 1)."),
    ("world", "rw", "Number of nodes n in the ring."),
    ("job", "rw", "Operation number carried in every header; change it for every operation (16 bits)."),
    ("chunk", "rw", "C: elements per chunk (padded length / n)."),
    ("frame", "rw", "P: elements per frame."),
    ("frames_per_chunk", "rw", "ceil(C / P)."),
    ("slice_frames", "rw", "F: frames per slice (≤ the nic_max_slice ROM parameter)."),
    ("codecs", "rw", "Bits 0–1: reduce-scatter codec, bits 2–3: all-gather codec (0 fp32, 1 bf16, 2 mxint8)."),
    ("timeout", "rw", "Cycles without progress before the operation ends with TIMEOUT."),
    ("rto", "rw", "Cycles without an acknowledgement before going back to the oldest unacknowledged frame."),
    ("ack_every", "rw", "Accepted frames per acknowledgement (1 … 255)."),
    ("ack_delay", "rw", "Cycles an accepted frame may wait for its acknowledgement."),
    ("control", "rw", "Write 1: start an operation with the registers above; write 2: start it when the cycle "
                      "counter reaches `start_at` (at once if that is past; status reads busy while armed); write 0: "
                      "disarm."),
    ("status", "ro", "0 idle, 1 busy, 2 done, 3 error."),
    ("error", "ro", "ErrorCode of the last operation (0 none, 1 timeout, 2 bad configuration)."),
    ("frames_sent", "ro", "DATA frames sent in the last operation, retransmissions included."),
    ("retransmits", "ro", "DATA frames sent again."),
    ("frames_accepted", "ro", "DATA frames taken in order."),
    ("frames_dropped", "ro", "DATA frames dropped (duplicate, out of order, no free slot, malformed)."),
    ("acks_sent", "ro", "ACK frames sent."),
    ("op_cycles", "ro", "Cycles from start to done or error."),
    ("bytes_sent", "ro", "UDP payload bytes sent (headers, ACKs and retransmissions included)."),
    # Addresses (Ethernet/IPv4/UDP, docs/ethernet.md): this node's, and those of its ring neighbours; the
    # successor gets DATA frames, the predecessor ACKs. Sampled per datagram: set them before `control`.
    ("mac_hi", "rw", "This node's MAC address, bits 47…32 (first two bytes on the wire).", 0xFFFF),
    ("mac_lo", "rw", "This node's MAC address, bits 31…0."),
    ("ip", "rw", "This node's IPv4 address (10.0.0.1 is 0x0A000001)."),
    ("udp_port", "rw", "This node's UDP port: datagrams to any other port are not for us.", 0xFFFF),
    ("next_mac_hi", "rw", "The successor's (rank + 1) MAC address, bits 47…32.", 0xFFFF),
    ("next_mac_lo", "rw", "The successor's MAC address, bits 31…0."),
    ("next_ip", "rw", "The successor's IPv4 address."),
    ("next_port", "rw", "The successor's UDP port.", 0xFFFF),
    ("prev_mac_hi", "rw", "The predecessor's (rank − 1) MAC address, bits 47…32.", 0xFFFF),
    ("prev_mac_lo", "rw", "The predecessor's MAC address, bits 31…0."),
    ("prev_ip", "rw", "The predecessor's IPv4 address."),
    ("prev_port", "rw", "The predecessor's UDP port.", 0xFFFF),
    # The UDP endpoint's counters (rtl/udp.py COUNTER_NAMES), since reset, wrapping at 2**32.
    ("eth_frames_sent", "ro", "Ethernet frames put on the wire (DATA and ACK)."),
    ("eth_frames_received", "ro", "Datagrams accepted and handed to the ring engine."),
    ("eth_fcs_errors", "ro", "Frames dropped for a bad FCS (corrupted on the wire)."),
    ("eth_ip_checksum_errors", "ro", "Frames dropped for a bad IPv4 header checksum."),
    ("eth_udp_checksum_errors", "ro", "Datagrams dropped for a bad (non-zero) UDP checksum."),
    ("eth_not_for_us", "ro", "Frames for another MAC, IP address, protocol or port."),
    ("eth_length_errors", "ro", "Frames too short, too long, or with inconsistent IPv4/UDP lengths."),
    ("eth_overflows", "ro", "Good datagrams dropped because the receive buffer was full."),
    ("eth_rx_errors", "ro", "Frames received with RX_ER."),
    ("eth_tx_dropped", "ro", "Datagrams from the ring engine whose length did not match (a bug if non-zero)."),
    # Timed start: nodes that share a clock (the simulated cluster) start on the same cycle.
    ("start_at", "rw", "Cycle (low 32 bits of the SoC's cycle counter) at which an armed operation starts."),
    ("start_cycle", "ro", "Low 32 bits of the cycle counter when the last operation started."),
)

#: The UDP endpoint counter behind each eth_* register.
ETH_COUNTER_REGISTERS = {f"eth_{name}": name for name in (
    "frames_sent", "frames_received", "fcs_errors", "ip_checksum_errors", "udp_checksum_errors", "not_for_us",
    "length_errors", "overflows", "rx_errors", "tx_dropped")}

#: Addresses the host driver gives rank r when the caller names none: a locally administered MAC
#: 02:74:6E:00:00:<r> ("tn"), IPv4 10.0.0.<r + 1>, and one UDP port for every node.
DEFAULT_UDP_PORT = 0x7E50           # 32336


def default_mac(rank: int) -> int:
    if not 0 <= rank <= 0xFF:
        raise ValueError(f"no default MAC for rank {rank}; give the addresses explicitly")
    return 0x02_74_6E_00_00_00 | rank


def default_ip(rank: int) -> int:
    if not 0 <= rank <= 253:
        raise ValueError(f"no default IPv4 address for rank {rank}; give the addresses explicitly")
    return 0x0A_00_00_01 + rank

#: Register defaults the host driver writes (cycles at 125 MHz).
DEFAULT_TIMEOUT = 12_500_000       # 0.1 s
DEFAULT_RTO = 250_000              # 2 ms
DEFAULT_ACK_EVERY = 4
DEFAULT_ACK_DELAY = 16_000
