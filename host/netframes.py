"""The NIC's Ethernet II / IPv4 / UDP frames as bytes: the golden model of `tensornic.rtl.udp`.

`build_frame` makes exactly the frame `UdpEndpoint` sends for a datagram (destination MAC to FCS; the wire
adds `PREAMBLE` in front), and `parse_frame` accepts or rejects a received frame exactly as the gateware
does, raising a named `FrameError` whose `counter` is the `UdpEndpoint.counters` field the gateware bumps.
`PcapWriter` stores frames in a classic pcap file for scapy, Wireshark and tshark. The format is described
byte by byte in docs/ethernet.md; the constants come from the gateware modules, where they are defined once.
"""

import ipaddress
import struct
import zlib
from dataclasses import dataclass

from .errors import TensornicError
from .rtl.ethernet import (ETH_HEADER_BYTES, FCS_BYTES, FCS_RESIDUE, MIN_FRAME_BYTES, PREAMBLE_BYTE,
                           PREAMBLE_LENGTH, SFD_BYTE)
from .rtl.udp import (DEFAULT_MAX_PAYLOAD, ETHERTYPE_IPV4, HEADER_BYTES, IP_PROTO_UDP, IPV4_FLAGS_DF,
                      IPV4_HEADER_BYTES, IPV4_TTL, IPV4_VERSION_IHL, MAX_PAYLOAD_LIMIT, UDP_HEADER_BYTES,
                      max_frame_bytes)

__all__ = [
    "PREAMBLE", "NetFrameError", "FrameBuildError", "FrameError", "RxError", "FrameTooLong", "BadFcs",
    "FrameTooShort", "NotForUs", "BadIpChecksum", "BadLength", "BadUdpChecksum",
    "Datagram", "mac_int", "mac_str", "ip_int", "ip_str", "fcs", "ones_complement_sum", "ipv4_checksum",
    "udp_checksum", "build_frame", "parse_frame", "gmii_bytes", "PcapWriter", "write_pcap",
    "LINKTYPE_ETHERNET",
]

#: What precedes every frame on the wire: 7 preamble bytes and the start-of-frame delimiter.
PREAMBLE = bytes([PREAMBLE_BYTE] * PREAMBLE_LENGTH + [SFD_BYTE])
LINKTYPE_ETHERNET = 1


class NetFrameError(TensornicError):
    """Base class of the errors of this module."""


class FrameBuildError(NetFrameError, ValueError):
    """An argument of build_frame (address, port, payload size, …) is out of range."""


class FrameError(NetFrameError):
    """A received frame is rejected. `counter` names the UdpEndpoint counter the gateware increments."""
    counter = None


class RxError(FrameError):
    """RX_ER was asserted during the frame."""
    counter = "rx_errors"


class FrameTooLong(FrameError):
    """More bytes than the largest frame (46 + max_payload, FCS included)."""
    counter = "length_errors"


class BadFcs(FrameError):
    """The FCS is not the CRC-32 of the frame."""
    counter = "fcs_errors"


class FrameTooShort(FrameError):
    """Fewer than 64 bytes, FCS included."""
    counter = "length_errors"


class NotForUs(FrameError):
    """Another MAC, EtherType, IP version/options, fragment, protocol, IP address or UDP port."""
    counter = "not_for_us"


class BadIpChecksum(FrameError):
    """The IPv4 header checksum is wrong."""
    counter = "ip_checksum_errors"


class BadLength(FrameError):
    """IPv4 total length and UDP length disagree, leave no payload, or overrun the frame."""
    counter = "length_errors"


class BadUdpChecksum(FrameError):
    """The UDP checksum is non-zero and wrong."""
    counter = "udp_checksum_errors"


@dataclass(frozen=True)
class Datagram:
    """An accepted datagram and the addresses it came with (MACs and IPs as integers)."""
    payload: bytes
    src_mac: int
    dst_mac: int
    src_ip: int
    dst_ip: int
    src_port: int
    dst_port: int
    ident: int
    udp_checksum: int


# --- addresses --------------------------------------------------------------------------------------------

def mac_int(mac) -> int:
    """A MAC address as a 48-bit integer, from an int, 6 bytes or 'aa:bb:cc:dd:ee:ff'."""
    if isinstance(mac, (bytes, bytearray)):
        if len(mac) != 6:
            raise FrameBuildError(f"a MAC address is 6 bytes, not {len(mac)}")
        return int.from_bytes(mac, "big")
    if isinstance(mac, str):
        parts = mac.replace("-", ":").split(":")
        if len(parts) != 6 or not all(len(p) in (1, 2) for p in parts):
            raise FrameBuildError(f"not a MAC address: {mac!r}")
        try:
            return int.from_bytes(bytes(int(p, 16) for p in parts), "big")
        except ValueError:
            raise FrameBuildError(f"not a MAC address: {mac!r}") from None
    if isinstance(mac, int) and not isinstance(mac, bool) and 0 <= mac < 1 << 48:
        return mac
    raise FrameBuildError(f"not a MAC address: {mac!r} (an int below 2**48, 6 bytes or 'aa:bb:…')")


def mac_str(mac) -> str:
    return ":".join(f"{b:02x}" for b in mac_int(mac).to_bytes(6, "big"))


def ip_int(ip) -> int:
    """An IPv4 address as a 32-bit integer, from an int, 4 bytes or '10.0.0.1'."""
    if isinstance(ip, (bytes, bytearray)):
        if len(ip) != 4:
            raise FrameBuildError(f"an IPv4 address is 4 bytes, not {len(ip)}")
        return int.from_bytes(ip, "big")
    if isinstance(ip, str):
        try:
            return int(ipaddress.IPv4Address(ip))
        except ValueError:
            raise FrameBuildError(f"not an IPv4 address: {ip!r}") from None
    if isinstance(ip, int) and not isinstance(ip, bool) and 0 <= ip < 1 << 32:
        return ip
    raise FrameBuildError(f"not an IPv4 address: {ip!r} (an int below 2**32, 4 bytes or 'a.b.c.d')")


def ip_str(ip) -> str:
    return str(ipaddress.IPv4Address(ip_int(ip)))


def _port(port, what):
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise FrameBuildError(f"{what} must be an integer in 0…65535, not {port!r}")
    return port


# --- checksums --------------------------------------------------------------------------------------------

def fcs(frame: bytes) -> bytes:
    """The Ethernet FCS of `frame` (destination MAC up to the end of the padding), as sent on the wire."""
    return struct.pack("<I", zlib.crc32(frame))


def ones_complement_sum(data: bytes) -> int:
    """RFC 1071 sum of big-endian 16-bit words (an odd last byte is the high byte of a word)."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ipv4_checksum(header: bytes) -> int:
    """The checksum field for a 20-byte IPv4 header whose own checksum field is zero."""
    return ~ones_complement_sum(header) & 0xFFFF


def udp_checksum(src_ip, dst_ip, segment: bytes) -> int:
    """The UDP checksum of `segment` (UDP header with a zero checksum field, then the payload), with the
    IPv4 pseudo-header; a computed 0 is sent as 0xFFFF (RFC 768)."""
    pseudo = struct.pack("!IIBBH", ip_int(src_ip), ip_int(dst_ip), 0, IP_PROTO_UDP, len(segment))
    value = ~ones_complement_sum(pseudo + segment) & 0xFFFF
    return value or 0xFFFF


# --- frames -----------------------------------------------------------------------------------------------

def build_frame(payload: bytes, *, src_mac, dst_mac, src_ip, dst_ip, src_port: int, dst_port: int,
                ident: int = 0, with_udp_checksum: bool = False,
                max_payload: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """The frame UdpEndpoint sends for `payload`: headers, zero padding to 60 bytes, FCS.

    The gateware always sends UDP checksum 0 (`with_udp_checksum=False`); True computes it, to test the
    receive side. `ident` is the IPv4 identification (the gateware's count of frames built before)."""
    payload = bytes(payload)
    if isinstance(max_payload, bool) or not isinstance(max_payload, int) \
            or not 1 <= max_payload <= MAX_PAYLOAD_LIMIT:
        raise FrameBuildError(f"max_payload must be an integer in 1…{MAX_PAYLOAD_LIMIT}, not {max_payload!r}")
    if not 1 <= len(payload) <= max_payload:
        raise FrameBuildError(f"a payload is 1…{max_payload} bytes, not {len(payload)}")
    if isinstance(ident, bool) or not isinstance(ident, int) or not 0 <= ident <= 0xFFFF:
        raise FrameBuildError(f"ident must be an integer in 0…65535, not {ident!r}")
    src_port = _port(src_port, "src_port")
    dst_port = _port(dst_port, "dst_port")
    src, dst = ip_int(src_ip), ip_int(dst_ip)

    ethernet = mac_int(dst_mac).to_bytes(6, "big") + mac_int(src_mac).to_bytes(6, "big") \
        + struct.pack("!H", ETHERTYPE_IPV4)
    total = IPV4_HEADER_BYTES + UDP_HEADER_BYTES + len(payload)
    ip = struct.pack("!BBHHHBBHII", IPV4_VERSION_IHL, 0, total, ident, IPV4_FLAGS_DF, IPV4_TTL,
                     IP_PROTO_UDP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", ipv4_checksum(ip)) + ip[12:]
    udp_length = UDP_HEADER_BYTES + len(payload)
    udp = struct.pack("!HHHH", src_port, dst_port, udp_length, 0)
    if with_udp_checksum:
        udp = udp[:6] + struct.pack("!H", udp_checksum(src, dst, udp + payload))
    frame = ethernet + ip + udp + payload
    frame += bytes(max(0, MIN_FRAME_BYTES - FCS_BYTES - len(frame)))
    return frame + fcs(frame)


def gmii_bytes(frame: bytes) -> bytes:
    """What the transmitter drives while TX_EN is high: preamble, SFD, the frame with its FCS."""
    return PREAMBLE + bytes(frame)


def parse_frame(frame: bytes, *, local_mac, local_ip, local_port: int,
                max_payload: int = DEFAULT_MAX_PAYLOAD, rx_error: bool = False) -> Datagram:
    """Accept `frame` (destination MAC to FCS, as received after the SFD) as UdpEndpoint does, or raise
    the FrameError of the first rule it breaks (the order of docs/ethernet.md and rtl/udp.py).
    `rx_error` says RX_ER was seen during the frame."""
    frame = bytes(frame)
    local_mac, local_ip = mac_int(local_mac), ip_int(local_ip)
    local_port = _port(local_port, "local_port")
    if isinstance(max_payload, bool) or not isinstance(max_payload, int) \
            or not 1 <= max_payload <= MAX_PAYLOAD_LIMIT:
        raise FrameBuildError(f"max_payload must be an integer in 1…{MAX_PAYLOAD_LIMIT}, not {max_payload!r}")
    largest = max_frame_bytes(max_payload)

    if rx_error:
        raise RxError("RX_ER was asserted during the frame")
    if len(frame) > largest:
        raise FrameTooLong(f"{len(frame)} bytes with FCS; at most {largest} (max_payload {max_payload})")
    if zlib.crc32(frame) != FCS_RESIDUE:
        raise BadFcs(f"FCS {frame[-4:].hex() if len(frame) >= 4 else '(none)'} is not the CRC-32 of the "
                     f"{max(0, len(frame) - 4)} bytes before it")
    if len(frame) < MIN_FRAME_BYTES:
        raise FrameTooShort(f"{len(frame)} bytes with FCS; at least {MIN_FRAME_BYTES}")
    body = frame[:-FCS_BYTES]

    dst_mac = int.from_bytes(body[0:6], "big")
    src_mac = int.from_bytes(body[6:12], "big")
    ethertype, = struct.unpack("!H", body[12:14])
    if dst_mac != local_mac:
        raise NotForUs(f"destination MAC {mac_str(dst_mac)} is not ours ({mac_str(local_mac)})")
    if ethertype != ETHERTYPE_IPV4:
        raise NotForUs(f"EtherType {ethertype:#06x} is not IPv4")
    ip = body[ETH_HEADER_BYTES:ETH_HEADER_BYTES + IPV4_HEADER_BYTES]
    if ip[0] != IPV4_VERSION_IHL:
        raise NotForUs(f"IPv4 version/IHL byte {ip[0]:#04x}: only version 4 without options (0x45)")
    if ones_complement_sum(ip) != 0xFFFF:
        raise BadIpChecksum(f"IPv4 header checksum {ip[10:12].hex()} is wrong "
                            f"(should be {ipv4_checksum(ip[:10] + bytes(2) + ip[12:]):04x})")
    _, _, total, ident, flags_fragment, _, protocol, _, src_ip, dst_ip = struct.unpack("!BBHHHBBHII", ip)
    if flags_fragment & 0x3FFF:
        raise NotForUs(f"a fragment (flags/offset {flags_fragment:#06x}); fragments are not reassembled")
    if protocol != IP_PROTO_UDP:
        raise NotForUs(f"IP protocol {protocol} is not UDP")
    if dst_ip != local_ip:
        raise NotForUs(f"destination IP {ip_str(dst_ip)} is not ours ({ip_str(local_ip)})")
    udp = body[ETH_HEADER_BYTES + IPV4_HEADER_BYTES:HEADER_BYTES]
    src_port, dst_port, udp_length, checksum = struct.unpack("!HHHH", udp)
    if total < IPV4_HEADER_BYTES + UDP_HEADER_BYTES + 1:
        raise BadLength(f"IPv4 total length {total} leaves no UDP payload")
    if udp_length + IPV4_HEADER_BYTES != total:
        raise BadLength(f"UDP length {udp_length} does not match IPv4 total length {total}")
    if ETH_HEADER_BYTES + total > len(body):
        raise BadLength(f"IPv4 total length {total} overruns the {len(body)}-byte frame")
    if dst_port != local_port:
        raise NotForUs(f"destination port {dst_port} is not ours ({local_port})")
    segment = body[ETH_HEADER_BYTES + IPV4_HEADER_BYTES:ETH_HEADER_BYTES + total]
    pseudo = struct.pack("!IIBBH", src_ip, dst_ip, 0, IP_PROTO_UDP, udp_length)
    if checksum != 0 and ones_complement_sum(pseudo + segment) != 0xFFFF:
        raise BadUdpChecksum(f"UDP checksum {checksum:04x} is wrong")
    return Datagram(payload=segment[UDP_HEADER_BYTES:], src_mac=src_mac, dst_mac=dst_mac, src_ip=src_ip,
                    dst_ip=dst_ip, src_port=src_port, dst_port=dst_port, ident=ident, udp_checksum=checksum)


# --- pcap -------------------------------------------------------------------------------------------------

class PcapWriter:
    """A classic pcap file (version 2.4, microsecond timestamps, LINKTYPE_ETHERNET).

    `with_fcs=True` (the default) stores each frame with its 4-byte FCS, as received on the wire; tools
    verify it with `-o eth.check_fcs:TRUE` (tshark/Wireshark then recognise the trailing 4 bytes as the FCS
    and report it good or bad); scapy shows them as padding after the UDP datagram. `with_fcs=False` drops
    the last 4 bytes, the usual form of host captures. `file` is a path or a binary file object (left open).
    Use as a context manager or call close().
    """

    MAGIC = 0xA1B2C3D4

    def __init__(self, file, *, with_fcs: bool = True, snaplen: int = 65535):
        if not isinstance(snaplen, int) or not MIN_FRAME_BYTES <= snaplen <= 0x3FFFFFFF:
            raise NetFrameError(f"snaplen must be an integer in {MIN_FRAME_BYTES}…2**30-1, not {snaplen!r}")
        self.with_fcs = bool(with_fcs)
        self.snaplen = snaplen
        if hasattr(file, "write"):
            self._file, self._owned = file, False
        else:
            self._file, self._owned = open(file, "wb"), True
        self._file.write(struct.pack("<IHHiIII", self.MAGIC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))
        self.count = 0

    def write(self, frame: bytes, timestamp: float = 0.0):
        """Add `frame` (destination MAC to FCS) captured at `timestamp` seconds."""
        frame = bytes(frame)
        if len(frame) < FCS_BYTES + ETH_HEADER_BYTES:
            raise NetFrameError(f"a {len(frame)}-byte frame is too short to be an Ethernet frame with FCS")
        if not isinstance(timestamp, (int, float)) or not timestamp >= 0:
            raise NetFrameError(f"timestamp must be a non-negative number of seconds, not {timestamp!r}")
        data = frame if self.with_fcs else frame[:-FCS_BYTES]
        captured = data[:self.snaplen]
        micros = round(timestamp * 1_000_000)
        self._file.write(struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(captured),
                                     len(data)))
        self._file.write(captured)
        self.count += 1

    def close(self):
        if self._owned:
            self._file.close()
        else:
            self._file.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_pcap(path, frames, *, with_fcs: bool = True, timestamps=None):
    """Write `frames` (each destination MAC to FCS) to a pcap file at `path`; `timestamps` in seconds
    (default: 1 µs apart). Returns the number of frames written."""
    frames = list(frames)
    if timestamps is None:
        timestamps = [k * 1e-6 for k in range(len(frames))]
    timestamps = list(timestamps)
    if len(timestamps) != len(frames):
        raise NetFrameError(f"{len(frames)} frames but {len(timestamps)} timestamps")
    with PcapWriter(path, with_fcs=with_fcs) as writer:
        for frame, t in zip(frames, timestamps):
            writer.write(frame, t)
    return len(frames)
