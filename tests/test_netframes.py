"""tensornic.netframes against independent references: scapy (frame layout, IPv4/UDP checksums, pcap
reading), a bit-serial CRC-32 written here from the polynomial (FCS), and tshark when it is installed."""

import io
import random
import shutil
import struct
import subprocess

import pytest

scapy_all = pytest.importorskip("scapy.all", reason="scapy is in the 'net' extra")
from scapy.all import IP, UDP, Ether, Raw, rdpcap  # noqa: E402

from tensornic import netframes as nf  # noqa: E402
from tensornic.netframes import (BadFcs, BadIpChecksum, BadLength, BadUdpChecksum, FrameBuildError,  # noqa: E402
                                 FrameTooLong, FrameTooShort, NotForUs, RxError)

A = dict(mac="02:00:5e:10:00:01", ip="10.1.0.1", port=47000)
B = dict(mac="02:00:5e:10:00:02", ip="10.1.0.2", port=47001)
LOCAL_B = dict(local_mac=B["mac"], local_ip=B["ip"], local_port=B["port"])


def frame_a_to_b(payload, **kw):
    return nf.build_frame(payload, src_mac=A["mac"], dst_mac=B["mac"], src_ip=A["ip"], dst_ip=B["ip"],
                          src_port=A["port"], dst_port=B["port"], **kw)


def crc32_bitwise(data):
    """IEEE 802.3 CRC-32, one bit at a time from the reflected polynomial 0xEDB88320."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def scapy_frame(payload, *, chksum=None, ident=0, flags="DF", src=A, dst=B, **ip_kw):
    udp = UDP(sport=src["port"], dport=dst["port"]) if chksum is None else \
        UDP(sport=src["port"], dport=dst["port"], chksum=chksum)
    packet = (Ether(src=src["mac"], dst=dst["mac"]) / IP(src=src["ip"], dst=dst["ip"], id=ident, flags=flags,
                                                          ttl=64, **ip_kw) / udp / Raw(payload))
    body = bytes(packet)
    body += bytes(max(0, 60 - len(body)))
    return body + struct.pack("<I", crc32_bitwise(body))


SIZES = [1, 5, 17, 18, 19, 64, 511, 1471, 1472]


@pytest.mark.parametrize("size", SIZES)
def test_scapy_parses_our_frames(size):
    rng = random.Random(size)
    payload = bytes(rng.randrange(256) for _ in range(size))
    frame = frame_a_to_b(payload, ident=size * 7)
    assert len(frame) == max(64, 42 + size + 4)
    assert frame[-4:] == struct.pack("<I", crc32_bitwise(frame[:-4]))
    packet = Ether(frame[:-4])
    assert packet[Ether].dst == B["mac"] and packet[Ether].src == A["mac"] and packet[Ether].type == 0x0800
    ip = packet[IP]
    assert (ip.version, ip.ihl, ip.tos, ip.len, ip.id, int(ip.flags), ip.frag, ip.ttl, ip.proto) == \
        (4, 5, 0, 28 + size, size * 7, 2, 0, 64, 17)
    assert (ip.src, ip.dst) == (A["ip"], B["ip"])
    udp = packet[UDP]
    assert (udp.sport, udp.dport, udp.len, udp.chksum) == (A["port"], B["port"], 8 + size, 0)
    assert bytes(udp.payload)[:size] == payload
    # scapy recomputes the IPv4 header checksum: the same value.
    rebuilt = ip.copy()
    del rebuilt.chksum
    assert IP(bytes(rebuilt)).chksum == ip.chksum
    # Our whole frame equals scapy's build of the same datagram.
    assert frame == scapy_frame(payload, chksum=0, ident=size * 7)


@pytest.mark.parametrize("size", [1, 2, 3, 100, 1471])
def test_udp_checksum_matches_scapy(size):
    payload = bytes(random.Random(size).randrange(256) for _ in range(size))
    ours = frame_a_to_b(payload, with_udp_checksum=True)
    theirs = scapy_frame(payload)            # scapy computes the UDP checksum
    assert Ether(theirs[:-4])[UDP].chksum != 0
    assert ours == theirs


def test_udp_checksum_zero_is_sent_as_ffff():
    # Find a payload whose computed checksum is 0: it must go out as 0xFFFF and still verify.
    base = frame_a_to_b(b"\0\0", with_udp_checksum=True)
    value = struct.unpack("!H", base[40:42])[0]
    want = (~value) & 0xFFFF if value != 0xFFFF else 0
    # Two payload bytes equal to `value` make the sum all-ones: the checksum is then 0 → 0xFFFF.
    payload = struct.pack("!H", value)
    frame = frame_a_to_b(payload, with_udp_checksum=True)
    assert frame[40:42] == b"\xff\xff", (hex(value), hex(want))
    assert nf.parse_frame(frame, **LOCAL_B).payload == payload
    assert Ether(frame[:-4])[UDP].chksum == 0xFFFF


@pytest.mark.parametrize("chksum", [None, 0])
@pytest.mark.parametrize("size", [1, 18, 333, 1472])
def test_we_parse_scapy_frames(size, chksum):
    payload = bytes(random.Random(size).randrange(256) for _ in range(size))
    datagram = nf.parse_frame(scapy_frame(payload, chksum=chksum, ident=99), **LOCAL_B)
    assert datagram.payload == payload
    assert (datagram.src_mac, datagram.src_ip, datagram.src_port) == \
        (nf.mac_int(A["mac"]), nf.ip_int(A["ip"]), A["port"])
    assert datagram.ident == 99


def test_we_accept_what_we_do_not_send():
    # No DF flag, another TTL and TOS, trailing bytes after the datagram: still accepted.
    frame = scapy_frame(b"x" * 30, flags=0, tos=0x28)
    assert nf.parse_frame(frame, **LOCAL_B).payload == b"x" * 30
    body = bytes(Ether(src=A["mac"], dst=B["mac"]) / IP(src=A["ip"], dst=B["ip"], ttl=3) /
                 UDP(sport=1, dport=B["port"]) / Raw(b"abc")) + b"trailer-bytes-beyond-the-ip-datagram"
    assert nf.parse_frame(body + nf.fcs(body), **LOCAL_B).payload == b"abc"


def corrupt(frame, offset, xor=0x01, fix_fcs=True):
    body = bytearray(frame[:-4])
    body[offset] ^= xor
    return bytes(body) + (nf.fcs(bytes(body)) if fix_fcs else frame[-4:])


def test_rejections_are_named_and_ordered():
    good = frame_a_to_b(b"payload!" * 4, with_udp_checksum=True)
    nf.parse_frame(good, **LOCAL_B)
    cases = [
        (lambda: nf.parse_frame(good, rx_error=True, **LOCAL_B), RxError, "rx_errors"),
        (lambda: nf.parse_frame(good[:-8] + good[-4:], **LOCAL_B), BadFcs, "fcs_errors"),
        (lambda: nf.parse_frame(corrupt(good, 20, fix_fcs=False), **LOCAL_B), BadFcs, "fcs_errors"),
        (lambda: nf.parse_frame(corrupt(good, 0), **LOCAL_B), NotForUs, "not_for_us"),          # MAC
        (lambda: nf.parse_frame(corrupt(good, 13), **LOCAL_B), NotForUs, "not_for_us"),         # EtherType
        (lambda: nf.parse_frame(corrupt(good, 14, 0x01), **LOCAL_B), NotForUs, "not_for_us"),   # IHL 6
        (lambda: nf.parse_frame(corrupt(good, 22), **LOCAL_B), BadIpChecksum, "ip_checksum_errors"),
        (lambda: nf.parse_frame(corrupt(good, 24), **LOCAL_B), BadIpChecksum, "ip_checksum_errors"),
        (lambda: nf.parse_frame(corrupt(good, 41), **LOCAL_B), BadUdpChecksum, "udp_checksum_errors"),
        (lambda: nf.parse_frame(corrupt(good, 60), **LOCAL_B), BadUdpChecksum, "udp_checksum_errors"),
        (lambda: nf.parse_frame(corrupt(good, 37), **LOCAL_B), NotForUs, "not_for_us"),         # port
    ]
    for run, error, counter in cases:
        with pytest.raises(error) as info:
            run()
        assert info.value.counter == counter
        assert isinstance(info.value, nf.FrameError) and str(info.value)


def test_ip_level_rejections():
    def frame(**ip_kw):
        return scapy_frame(b"q" * 20, **ip_kw)
    with pytest.raises(NotForUs, match="fragment"):
        nf.parse_frame(frame(flags="MF"), **LOCAL_B)
    with pytest.raises(NotForUs, match="fragment"):
        nf.parse_frame(frame(flags=0, frag=3), **LOCAL_B)
    with pytest.raises(NotForUs, match="protocol"):
        nf.parse_frame(frame(proto=6), **LOCAL_B)
    with pytest.raises(NotForUs, match="destination IP"):
        nf.parse_frame(scapy_frame(b"q", dst=dict(B, ip="10.1.0.9")), **LOCAL_B)
    # Consistent checksums but lengths that do not add up.
    with pytest.raises(BadLength, match="does not match"):
        body = bytes(Ether(src=A["mac"], dst=B["mac"]) / IP(src=A["ip"], dst=B["ip"]) /
                     UDP(sport=1, dport=B["port"], len=20) / Raw(b"z" * 30))
        nf.parse_frame(body + nf.fcs(body), **LOCAL_B)
    with pytest.raises(BadLength, match="overruns"):
        body = bytes(Ether(src=A["mac"], dst=B["mac"]) / IP(src=A["ip"], dst=B["ip"], len=200) /
                     UDP(sport=1, dport=B["port"], len=180) / Raw(b"z" * 30))
        nf.parse_frame(body + nf.fcs(body), **LOCAL_B)
    with pytest.raises(BadLength, match="no UDP payload"):
        body = bytes(Ether(src=A["mac"], dst=B["mac"]) / IP(src=A["ip"], dst=B["ip"]) /
                     UDP(sport=1, dport=B["port"]))
        body += bytes(60 - len(body))
        nf.parse_frame(body + nf.fcs(body), **LOCAL_B)


def test_length_limits():
    with pytest.raises(FrameTooShort):
        body = bytes(59)
        nf.parse_frame(body + nf.fcs(body), **LOCAL_B)
    big = frame_a_to_b(bytes(9000), max_payload=9000)
    assert len(big) == 9046
    assert len(nf.parse_frame(big, max_payload=9000, **LOCAL_B).payload) == 9000
    with pytest.raises(FrameTooLong):
        nf.parse_frame(big, **LOCAL_B)                     # 1472 by default
    with pytest.raises(FrameTooLong):
        nf.parse_frame(big, max_payload=8999, **LOCAL_B)


def test_build_argument_errors():
    ok = dict(src_mac=1, dst_mac=2, src_ip=3, dst_ip=4, src_port=5, dst_port=6)
    for payload, kw, match in [
        (b"", {}, "payload"), (bytes(1473), {}, "payload"), (bytes(10), dict(ident=1 << 16), "ident"),
        (b"x", dict(src_mac="02:00:00:00:00"), "MAC"), (b"x", dict(dst_mac=1 << 48), "MAC"),
        (b"x", dict(src_ip="10.0.0.256"), "IPv4"), (b"x", dict(dst_port=70000), "dst_port"),
        (b"x", dict(max_payload=9001), "max_payload"),
    ]:
        with pytest.raises(FrameBuildError, match=match):
            nf.build_frame(payload, **{**ok, **kw})
    assert issubclass(FrameBuildError, ValueError)


def test_address_forms():
    assert nf.mac_int("02:00:5e:10:00:01") == nf.mac_int(bytes.fromhex("02005e100001")) == 0x02005E100001
    assert nf.mac_str(0x02005E100001) == "02:00:5e:10:00:01"
    assert nf.ip_int("10.1.0.1") == nf.ip_int(b"\x0a\x01\x00\x01") == 0x0A010001
    assert nf.ip_str(0x0A010001) == "10.1.0.1"


def test_gmii_bytes_and_scapy_fcs_check():
    frame = frame_a_to_b(b"abc")
    wire = nf.gmii_bytes(frame)
    assert wire[:8] == bytes([0x55] * 7 + [0xD5]) and wire[8:] == frame
    # The residue rule of shared/nic.md.
    import zlib
    assert zlib.crc32(frame) == 0x2144DF1C


@pytest.mark.parametrize("with_fcs", [True, False])
def test_pcap_read_by_scapy(tmp_path, with_fcs):
    frames = [frame_a_to_b(bytes([k]) * (k * 37 % 1472 + 1), ident=k) for k in range(12)]
    path = tmp_path / "frames.pcap"
    assert nf.write_pcap(path, frames, with_fcs=with_fcs, timestamps=[k * 12.5e-6 for k in range(12)]) == 12
    packets = rdpcap(str(path))
    assert len(packets) == 12
    for k, (packet, frame) in enumerate(zip(packets, frames)):
        assert bytes(packet) == (frame if with_fcs else frame[:-4])
        assert packet[IP].id == k and packet[UDP].dport == B["port"]
        assert abs(float(packet.time) - k * 12.5e-6) < 1e-6


def test_pcap_writer_file_object_and_errors():
    buffer = io.BytesIO()
    with nf.PcapWriter(buffer) as writer:
        writer.write(frame_a_to_b(b"x"), 1.5)
    raw = buffer.getvalue()
    assert struct.unpack("<IHHiIII", raw[:24]) == (0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    assert struct.unpack("<IIII", raw[24:40]) == (1, 500000, 64, 64)
    with pytest.raises(nf.NetFrameError):
        nf.PcapWriter(io.BytesIO()).write(b"short")
    with pytest.raises(nf.NetFrameError):
        nf.write_pcap(io.BytesIO(), [frame_a_to_b(b"x")], timestamps=[])


def test_pcap_checked_by_tshark(tmp_path):
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed (Debian package 'tshark'); scapy checks above still ran")
    good = [frame_a_to_b(bytes([k]) * (k * 97 % 1472 + 1), ident=k, with_udp_checksum=bool(k % 2))
            for k in range(8)]
    bad = corrupt(good[3], 50, fix_fcs=False)
    path = tmp_path / "frames.pcap"
    nf.write_pcap(path, good + [bad])
    result = subprocess.run(
        [tshark, "-r", str(path), "-o", "eth.check_fcs:TRUE", "-o", "ip.check_checksum:TRUE",
         "-o", "udp.check_checksum:TRUE", "-T", "fields", "-E", "separator=,", "-e", "eth.fcs.status",
         "-e", "ip.checksum.status", "-e", "udp.checksum.status", "-e", "udp.dstport"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [line.split(",") for line in result.stdout.splitlines() if line.strip()]
    assert len(rows) == 9, result.stdout
    for k, (fcs_status, ip_status, udp_status, port) in enumerate(rows[:8]):
        # Wireshark's statuses: 1 good, 0 bad, 3 not present (a zero UDP checksum).
        assert (fcs_status, ip_status, udp_status, port) == ("1", "1", "1" if k % 2 else "3", str(B["port"]))
    assert rows[8][0] == "0", "tshark did not flag the corrupted frame's FCS"
