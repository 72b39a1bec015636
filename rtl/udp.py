"""Ethernet II + IPv4 + UDP endpoint for one NIC port, at GMII level (docs/ethernet.md).

What it is for
    `UdpEndpoint` is the whole network stack of one port in one clock domain: the application gives it
    datagrams (a length, a destination, then the payload bytes) and takes the payloads of datagrams that
    arrived for it; the other side is the GMII wire. The frame format is defined once in
    `tensornic.netframes` (the bit-exact Python model); the constants below are shared with it.

Transmit
    `tx_length` (stream of the payload length, 1…max_payload bytes) is taken first, and `tx_dst` (peer MAC,
    IP, UDP port) is sampled in the same cycle; then the payload bytes on `tx`, `last` on the final one.
    The payload is stored whole in a transmit `FrameBuffer` before the frame starts, so `tx` may pause
    anywhere while the wire never does. A datagram whose `last` byte is not its `tx_length`-th byte, or
    whose length is 0 or above `max_payload`, is consumed up to its `last` byte, not sent, and counted in
    `tx_dropped`. Frames are built with: source MAC/IP/port from `config` (sampled when the frame is
    built), IPv4 version 4, IHL 5, DSCP/ECN 0, identification = number of frames built before it (mod
    2**16), flags DF, fragment offset 0, TTL 64, protocol 17, the IPv4 header checksum (computed from the
    length known in advance), and UDP checksum 0: a UDP checksum covers the payload and sits in the header,
    so sending it would need the whole payload before the first header byte — a second pass over the
    buffer and a frame's worth of latency — while the Ethernet FCS already protects every byte on the link.
    RFC 768 allows 0 ("no checksum") over IPv4. Frames shorter than 60 bytes are padded with zeros.
    A datagram stored before the previous frame ends follows it at line rate (the 12-byte gap and
    nothing more). TX_EN rises 10 cycles after the last payload byte is taken when the wire is free.

Receive (store and forward)
    Every frame is parsed as it arrives; the payload of a frame that may be for us is written to the
    receive `FrameBuffer` speculatively and committed only when the frame has ended and every check has
    passed; otherwise it is rewound. A frame is classified by the first failing rule, in this order, and
    counted once:
      1. RX_ER during the frame                              → rx_errors
      2. longer than the largest frame (46 + max_payload)    → length_errors
      3. bad FCS                                             → fcs_errors
      4. shorter than 64 bytes                               → length_errors
      5. destination MAC ≠ local_mac, EtherType ≠ 0x0800,
         or IPv4 version/IHL byte ≠ 0x45                     → not_for_us
      6. bad IPv4 header checksum                            → ip_checksum_errors
      7. fragment (MF set or offset ≠ 0), protocol ≠ 17,
         or destination IP ≠ local_ip                        → not_for_us
      8. IPv4 total length < 29, UDP length ≠ total − 20, or
         the IPv4 datagram longer than the frame             → length_errors
      9. destination port ≠ local_port                       → not_for_us
     10. UDP checksum ≠ 0 and wrong                          → udp_checksum_errors
     11. the receive buffer was full                         → overflows
    else: delivered on `rx`, counted in frames_received. Bytes after the IPv4 datagram (Ethernet padding)
    are ignored. Payloads of accepted datagrams are at least 1 byte long (rule 8). The first payload byte
    is valid on `rx` 12 cycles after the last FCS byte was on the wire.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .ethernet import (ETH_HEADER_BYTES, FCS_BYTES, EthReceiver, EthTransmitter, FrameBuffer, FrameByte,
                       GmiiSignature, MIN_IFG_BYTES, RxStatus)

__all__ = [
    "ETHERTYPE_IPV4", "IPV4_VERSION_IHL", "IPV4_FLAGS_DF", "IPV4_TTL", "IP_PROTO_UDP",
    "IPV4_HEADER_BYTES", "UDP_HEADER_BYTES", "HEADER_BYTES", "DEFAULT_MAX_PAYLOAD", "MAX_PAYLOAD_LIMIT",
    "COUNTER_NAMES", "EndpointConfig", "Destination", "ConfigSignature", "DestinationSignature",
    "CountersSignature", "max_frame_bytes",
    "default_buffer_bytes", "UdpEndpoint",
]

ETHERTYPE_IPV4 = 0x0800
IPV4_VERSION_IHL = 0x45       # version 4, header length 5 words (no options)
IPV4_FLAGS_DF = 0x4000        # flags and fragment offset: don't fragment, offset 0
IPV4_TTL = 64
IP_PROTO_UDP = 17
IPV4_HEADER_BYTES = 20
UDP_HEADER_BYTES = 8
HEADER_BYTES = ETH_HEADER_BYTES + IPV4_HEADER_BYTES + UDP_HEADER_BYTES     # 42: payload offset in a frame
DEFAULT_MAX_PAYLOAD = 1472    # a 1500-byte IPv4 MTU
MAX_PAYLOAD_LIMIT = 9000      # jumbo frames

#: The endpoint's counters, in the order of the `Counters` layout. All 32 bits, wrapping.
COUNTER_NAMES = (
    "frames_sent",            # frames put on the wire
    "frames_received",        # datagrams delivered on `rx`
    "fcs_errors",
    "ip_checksum_errors",
    "udp_checksum_errors",
    "not_for_us",             # MAC, EtherType, IP version/options/fragment/protocol, IP address, port
    "length_errors",          # too short, too long, inconsistent IPv4/UDP lengths
    "overflows",              # good datagrams dropped because the receive buffer was full
    "rx_errors",              # frames with RX_ER asserted
    "tx_dropped",             # datagrams given on tx whose length did not match tx_length
)

EndpointConfig = data.StructLayout({"local_mac": 48, "local_ip": 32, "local_port": 16})
Destination = data.StructLayout({"mac": 48, "ip": 32, "port": 16})


def _signals(layout):
    # Ports are plain signals grouped by a signature (not one struct-shaped signal), so the Verilog has
    # one port per field, e.g. `config__local_mac`, `counters__fcs_errors`.
    return wiring.Signature({name: Out(field.shape) for name, field in layout})


#: `UdpEndpoint.config` (In): local_mac, local_ip, local_port.
ConfigSignature = _signals(EndpointConfig)
#: `UdpEndpoint.tx_dst` (In): mac, ip, port of the datagram's destination.
DestinationSignature = _signals(Destination)
#: `UdpEndpoint.counters` (Out): one 32-bit wrapping counter per name in COUNTER_NAMES.
CountersSignature = wiring.Signature({name: Out(32) for name in COUNTER_NAMES})

_Descriptor = data.StructLayout({"length": 16, "dst": Destination})


def max_frame_bytes(max_payload):
    """Largest frame the endpoint sends or accepts, from the destination MAC to the FCS inclusive."""
    return HEADER_BYTES + max_payload + FCS_BYTES


def default_buffer_bytes(max_payload):
    """Room for two largest datagrams, rounded up to a power of two (4096 for 1472 bytes)."""
    size = 16
    while size < 2 * max_payload:
        size *= 2
    return size


def _be_bytes(value, n):
    """The `n` bytes of `value`, most significant first (network order)."""
    return [value[8 * (n - 1 - k):8 * (n - k)] for k in range(n)]


class UdpEndpoint(wiring.Component):
    """One port's Ethernet II/IPv4/UDP stack; see the module docstring and docs/ethernet.md.

    Ports
        config : In(ConfigSignature)            local_mac, local_ip, local_port (set by the host).
        tx_length : In(stream.Signature(16))    payload bytes of the next datagram, before its bytes.
        tx_dst : In(DestinationSignature)       peer mac, ip, port; sampled when `tx_length` transfers.
        tx : In(stream.Signature(FrameByte))    the datagram's payload, `last` on its final byte.
        rx : Out(stream.Signature(FrameByte))   payloads of accepted datagrams, `last` on the final byte.
        gmii_tx : Out(GmiiSignature())          the wire out.
        gmii_rx : In(GmiiSignature())           the wire in.
        counters : Out(CountersSignature)       see COUNTER_NAMES.
        tx_idle : Out(1)                        nothing accepted on tx is still waiting to be sent.

    Parameters: `max_payload` (1…9000, default 1472), `tx_buffer_bytes` / `rx_buffer_bytes` (powers of
    two ≥ max_payload; default `default_buffer_bytes(max_payload)`), `ifg_bytes` (≥ 12).
    """

    def __init__(self, *, max_payload=DEFAULT_MAX_PAYLOAD, tx_buffer_bytes=None, rx_buffer_bytes=None,
                 ifg_bytes=MIN_IFG_BYTES):
        if isinstance(max_payload, bool) or not isinstance(max_payload, int) \
                or not 1 <= max_payload <= MAX_PAYLOAD_LIMIT:
            raise ValueError(f"max_payload must be an integer in 1…{MAX_PAYLOAD_LIMIT}, not {max_payload!r}")
        self.max_payload = max_payload
        self.max_frame = max_frame_bytes(max_payload)
        sizes = {}
        for name, size in (("tx_buffer_bytes", tx_buffer_bytes), ("rx_buffer_bytes", rx_buffer_bytes)):
            if size is None:
                size = default_buffer_bytes(max_payload)
            if not isinstance(size, int) or size < 16 or size & (size - 1) or size < max_payload:
                raise ValueError(f"{name} must be a power of two ≥ max_payload ({max_payload}) and ≥ 16, "
                                 f"not {size!r}")
            sizes[name] = size
        self.tx_buffer_bytes = sizes["tx_buffer_bytes"]
        self.rx_buffer_bytes = sizes["rx_buffer_bytes"]
        self.ifg_bytes = ifg_bytes
        if not isinstance(ifg_bytes, int) or not MIN_IFG_BYTES <= ifg_bytes <= 255:
            raise ValueError(f"ifg_bytes must be an integer in {MIN_IFG_BYTES}…255, not {ifg_bytes!r}")
        super().__init__({
            "config": In(ConfigSignature),
            "tx_length": In(stream.Signature(16)),
            "tx_dst": In(DestinationSignature),
            "tx": In(stream.Signature(FrameByte)),
            "rx": Out(stream.Signature(FrameByte)),
            "gmii_tx": Out(GmiiSignature()),
            "gmii_rx": In(GmiiSignature()),
            "counters": Out(CountersSignature),
            "tx_idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.eth_tx = eth_tx = EthTransmitter(ifg_bytes=self.ifg_bytes)
        m.submodules.eth_rx = eth_rx = EthReceiver(max_frame=self.max_frame)
        m.submodules.tx_buffer = tx_buffer = FrameBuffer(self.tx_buffer_bytes)
        m.submodules.rx_buffer = rx_buffer = FrameBuffer(self.rx_buffer_bytes)
        m.submodules.tx_queue = tx_queue = fifo.SyncFIFOBuffered(width=_Descriptor.size, depth=4)

        wiring.connect(m, wiring.flipped(self.gmii_tx), eth_tx.gmii)
        wiring.connect(m, wiring.flipped(self.gmii_rx), eth_rx.gmii)
        wiring.connect(m, wiring.flipped(self.rx), rx_buffer.r)
        m.d.comb += self.counters.frames_sent.eq(eth_tx.frames)

        writer_idle = self._accept_datagrams(m, tx_buffer, tx_queue)
        builder_idle = self._build_frames(m, tx_buffer, tx_queue, eth_tx)
        m.d.comb += self.tx_idle.eq(writer_idle & builder_idle & (tx_queue.level == 0) & tx_buffer.empty
                                    & eth_tx.idle)
        self._parse_frames(m, eth_rx, rx_buffer)
        return m

    def _accept_datagrams(self, m, buffer, queue):
        """tx_length + tx_dst + tx → the transmit buffer (committed whole) and a descriptor in `queue`."""
        length = Signal(16)
        dst = Signal(Destination)
        # Bytes still expected, and registered flags about them, so that the commit decision is a few
        # gates after flip-flops (no 16-bit comparison in front of the buffer's pointers).
        left = Signal(16)
        storing = Signal()              # the next byte belongs to a datagram of a valid length: store it
        at_last = Signal()              # the next byte is the announced last one
        writer_idle = Signal()
        descriptor = Signal(_Descriptor)
        m.d.comb += [descriptor.length.eq(length), descriptor.dst.eq(dst), queue.w_data.eq(descriptor)]

        with m.FSM(name="tx_writer"):
            with m.State("LENGTH"):
                m.d.comb += [writer_idle.eq(1), self.tx_length.ready.eq(queue.w_rdy)]
                with m.If(self.tx_length.valid & queue.w_rdy):
                    valid_length = (self.tx_length.payload != 0) & (self.tx_length.payload <= self.max_payload)
                    m.d.sync += [
                        length.eq(self.tx_length.payload), left.eq(self.tx_length.payload),
                        storing.eq(valid_length), at_last.eq(self.tx_length.payload == 1),
                        dst.mac.eq(self.tx_dst.mac), dst.ip.eq(self.tx_dst.ip), dst.port.eq(self.tx_dst.port),
                    ]
                    m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                # Bytes past the announced length (or of a bad length) are taken and thrown away, so a
                # wrong datagram can never fill the buffer and block the ones behind it.
                m.d.comb += [
                    self.tx.ready.eq(~storing | buffer.w_room),
                    buffer.w_data.data.eq(self.tx.payload.data),
                    buffer.w_data.last.eq(at_last),
                ]
                with m.If(self.tx.valid & self.tx.ready):
                    m.d.comb += buffer.w_en.eq(storing)
                    m.d.sync += [left.eq(left - (left != 0)), at_last.eq(left == 2)]
                    with m.If(at_last):
                        m.d.sync += storing.eq(0)
                    with m.If(self.tx.payload.last):
                        with m.If(storing & at_last):
                            m.d.comb += [buffer.commit.eq(1), queue.w_en.eq(1)]
                        with m.Else():
                            m.d.comb += buffer.rewind.eq(1)
                            m.d.sync += self.counters.tx_dropped.eq(self.counters.tx_dropped + 1)
                        m.next = "LENGTH"
        return writer_idle

    def _build_frames(self, m, buffer, queue, eth_tx):
        """Descriptor + stored payload → header bytes then payload bytes into the Ethernet transmitter."""
        builder_idle = Signal()
        descriptor = Signal(_Descriptor)
        source = Signal(EndpointConfig)
        ident = Signal(16)
        frame_ident = Signal(16)
        total = Signal(16)
        checksum_sum = Signal(20)
        header = Signal(8 * HEADER_BYTES)
        sent = Signal(range(HEADER_BYTES))

        # The IPv4 header checksum: a ones' complement sum of the nine non-zero header words, added in a
        # tree of registered two-input adders (the frame waits 20+ cycles for the wire anyway).
        constant_words = ((IPV4_VERSION_IHL << 8) + IPV4_FLAGS_DF + ((IPV4_TTL << 8) | IP_PROTO_UDP)
                          + IPV4_HEADER_BYTES + UDP_HEADER_BYTES)
        pairs = [Signal(18, name=f"checksum_pair{k}") for k in range(4)]
        halves = [Signal(19, name=f"checksum_half{k}") for k in range(2)]
        checksum_once = Signal(17)
        checksum = Signal(16)
        m.d.comb += checksum.eq(~(checksum_once[:16] + checksum_once[16:])[:16])
        udp_length = Signal(16)
        m.d.comb += udp_length.eq(descriptor.length + UDP_HEADER_BYTES)

        fields = [
            (descriptor.dst.mac, 6), (source.local_mac, 6), (Const(ETHERTYPE_IPV4, 16), 2),
            (Const(IPV4_VERSION_IHL << 8, 16), 2), (total, 2), (frame_ident, 2), (Const(IPV4_FLAGS_DF, 16), 2),
            (Const((IPV4_TTL << 8) | IP_PROTO_UDP, 16), 2), (checksum, 2),
            (source.local_ip, 4), (descriptor.dst.ip, 4),
            (source.local_port, 2), (descriptor.dst.port, 2), (udp_length, 2), (Const(0, 16), 2),
        ]
        header_bytes = [byte for value, n in fields for byte in _be_bytes(value, n)]
        assert len(header_bytes) == HEADER_BYTES

        with m.FSM(name="tx_builder"):
            with m.State("IDLE"):
                m.d.comb += [builder_idle.eq(1), queue.r_en.eq(1)]
                with m.If(queue.r_rdy):
                    m.d.sync += [descriptor.eq(queue.r_data), source.local_mac.eq(self.config.local_mac),
                                 source.local_ip.eq(self.config.local_ip),
                                 source.local_port.eq(self.config.local_port),
                                 frame_ident.eq(ident), ident.eq(ident + 1)]
                    m.next = "SUM"
            with m.State("SUM"):
                m.d.sync += [
                    total.eq(descriptor.length + IPV4_HEADER_BYTES + UDP_HEADER_BYTES),
                    pairs[0].eq(descriptor.length + constant_words),
                    pairs[1].eq(frame_ident + source.local_ip[16:]),
                    pairs[2].eq(source.local_ip[:16] + descriptor.dst.ip[16:]),
                    pairs[3].eq(descriptor.dst.ip[:16]),
                ]
                m.next = "SUM2"
            with m.State("SUM2"):
                m.d.sync += [halves[0].eq(pairs[0] + pairs[1]), halves[1].eq(pairs[2] + pairs[3])]
                m.next = "SUM3"
            with m.State("SUM3"):
                m.d.sync += checksum_sum.eq(halves[0] + halves[1])
                m.next = "FOLD"
            with m.State("FOLD"):
                m.d.sync += checksum_once.eq(checksum_sum[:16] + checksum_sum[16:])
                m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += [header.eq(Cat(*header_bytes)), sent.eq(0)]
                m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [eth_tx.i.valid.eq(1), eth_tx.i.payload.data.eq(header[:8])]
                with m.If(eth_tx.i.ready):
                    m.d.sync += [header.eq(header[8:]), sent.eq(sent + 1)]
                    with m.If(sent == HEADER_BYTES - 1):
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                # The whole payload is in the buffer already: it flows one byte per cycle.
                wiring.connect(m, buffer.r, eth_tx.i)
                with m.If(buffer.r.valid & buffer.r.ready & buffer.r.payload.last):
                    m.next = "IDLE"
        return builder_idle

    def _parse_frames(self, m, eth_rx, buffer):
        """Received frame bytes → checks at fixed offsets, payload into the receive buffer, a verdict."""
        config = self.config
        counters = self.counters
        index = Signal(range(self.max_frame + 1))      # offset of the byte on eth_rx.o_data
        byte = eth_rx.o_data
        ip_sum = Signal(20)
        udp_sum = Signal(32)

        mac_ok = Signal(init=1)            # rule 5
        ethertype_ok = Signal(init=1)
        version_ok = Signal(init=1)
        fragment_ok = Signal(init=1)       # rule 7
        protocol_ok = Signal(init=1)
        ip_ok = Signal(init=1)
        port_ok = Signal(init=1)           # rule 9
        ip_total = Signal(16)
        udp_length = Signal(16)
        udp_checksum_zero = Signal(init=1)
        udp_end = Signal(17)               # offset after the UDP datagram (registered at offset 39)
        udp_last = Signal(17)              # offset of its last byte

        def match(flag, expected_bytes, first):
            for k, expected in enumerate(expected_bytes):
                with m.Case(first + k):
                    m.d.sync += flag.eq(flag & (byte == expected))

        accepting = mac_ok & ethertype_ok & version_ok & fragment_ok & protocol_ok & ip_ok & port_ok

        status = Signal(RxStatus)
        length = Signal(range(self.max_frame + 1))    # frame bytes without the FCS
        ip_folded = Signal(17)
        udp_total = Signal(32)
        udp_folded = Signal(17)
        ip_checksum_ok = Signal()
        udp_checksum_ok = Signal()
        lengths_ok = Signal()

        def count(name):
            field = getattr(counters, name)
            m.d.sync += field.eq(field + 1)

        # Stage B, one cycle behind the byte: the checksum sums and the receive buffer. It finishes the
        # frame's last byte in the cycle `end` arrives, before the verdict is computed.
        staged = Signal()
        staged_byte = Signal(8)
        staged_odd = Signal()
        in_ip_header = Signal()
        in_udp_sum = Signal()
        to_buffer = Signal()
        last_byte = Signal()
        # Ones' complement sums are kept as plain sums and folded after the frame: 16-bit words start at
        # even offsets (all IPv4 and UDP fields are word-aligned in the frame).
        word = Mux(staged_odd, staged_byte, Cat(Const(0, 8), staged_byte))
        m.d.sync += staged.eq(0)
        with m.If(staged):
            with m.If(in_ip_header):
                m.d.sync += ip_sum.eq(ip_sum + word)
            with m.If(in_udp_sum):
                m.d.sync += udp_sum.eq(udp_sum + word)
            m.d.comb += [
                buffer.w_en.eq(to_buffer),
                buffer.w_data.data.eq(staged_byte),
                buffer.w_data.last.eq(last_byte),
            ]

        with m.FSM(name="rx_parser"):
            with m.State("RECEIVE"):
                with m.If(eth_rx.o_valid):
                    m.d.sync += index.eq(index + 1)
                    with m.Switch(index):
                        match(mac_ok, _be_bytes(config.local_mac, 6), 0)
                        match(ethertype_ok, _be_bytes(Const(ETHERTYPE_IPV4, 16), 2), 12)
                        match(version_ok, [IPV4_VERSION_IHL], 14)
                        with m.Case(16):
                            m.d.sync += ip_total[8:].eq(byte)
                        with m.Case(17):
                            m.d.sync += ip_total[:8].eq(byte)
                        with m.Case(20):
                            m.d.sync += fragment_ok.eq(byte[:6] == 0)   # MF clear, offset high bits 0
                        match(fragment_ok, [0], 21)
                        match(protocol_ok, [IP_PROTO_UDP], 23)
                        match(ip_ok, _be_bytes(config.local_ip, 4), 30)
                        match(port_ok, _be_bytes(config.local_port, 2), 36)
                        with m.Case(38):
                            m.d.sync += udp_length[8:].eq(byte)
                        with m.Case(39):
                            length_now = Cat(byte, udp_length[8:])
                            m.d.sync += [udp_length[:8].eq(byte),
                                         udp_end.eq(HEADER_BYTES - UDP_HEADER_BYTES + length_now),
                                         udp_last.eq(HEADER_BYTES - UDP_HEADER_BYTES - 1 + length_now)]
                        match(udp_checksum_zero, [0, 0], 40)
                    # Stage A: classify the byte by its offset, into registers for stage B.
                    m.d.sync += [
                        staged.eq(1), staged_byte.eq(byte), staged_odd.eq(index[0]),
                        in_ip_header.eq((index >= ETH_HEADER_BYTES)
                                        & (index < ETH_HEADER_BYTES + IPV4_HEADER_BYTES)),
                        # The UDP sum: the pseudo-header's addresses (offsets 26…33), the UDP header and
                        # the payload (its length is known from offset 40 on); padding is left out.
                        in_udp_sum.eq((index >= 26) & ((index < 40) | (index < udp_end))),
                        to_buffer.eq((index >= HEADER_BYTES) & (index < udp_end) & accepting),
                        last_byte.eq(index == udp_last),
                    ]
                with m.If(eth_rx.end):
                    m.d.sync += [status.eq(eth_rx.status), length.eq(index)]
                    m.next = "FOLD1"
            with m.State("FOLD1"):
                once = ip_sum[:16] + ip_sum[16:]
                m.d.sync += [ip_folded.eq(once),
                             lengths_ok.eq((ip_total >= IPV4_HEADER_BYTES + UDP_HEADER_BYTES + 1)
                                           & (udp_length + IPV4_HEADER_BYTES == ip_total)
                                           & (ip_total + ETH_HEADER_BYTES <= length)),
                             udp_total.eq(udp_sum + IP_PROTO_UDP + udp_length)]   # rest of the pseudo-header
                m.next = "FOLD2"
            with m.State("FOLD2"):
                m.d.sync += [ip_checksum_ok.eq((ip_folded[:16] + ip_folded[16:])[:16] == 0xFFFF),
                             udp_folded.eq(udp_total[:16] + udp_total[16:])]
                m.next = "FOLD3"
            with m.State("FOLD3"):
                m.d.sync += udp_checksum_ok.eq((udp_folded[:16] + udp_folded[16:])[:16] == 0xFFFF)
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.comb += buffer.rewind.eq(1)
                with m.If(status.rx_error):
                    count("rx_errors")
                with m.Elif(status.too_long):
                    count("length_errors")
                with m.Elif(status.fcs_error):
                    count("fcs_errors")
                with m.Elif(status.too_short):
                    count("length_errors")
                with m.Elif(~(mac_ok & ethertype_ok & version_ok)):
                    count("not_for_us")
                with m.Elif(~ip_checksum_ok):
                    count("ip_checksum_errors")
                with m.Elif(~(fragment_ok & protocol_ok & ip_ok)):
                    count("not_for_us")
                with m.Elif(~lengths_ok):
                    count("length_errors")
                with m.Elif(~port_ok):
                    count("not_for_us")
                with m.Elif(~udp_checksum_zero & ~udp_checksum_ok):
                    count("udp_checksum_errors")
                with m.Elif(buffer.overflow):
                    count("overflows")
                with m.Else():
                    m.d.comb += [buffer.rewind.eq(0), buffer.commit.eq(1)]
                    count("frames_received")
                m.d.sync += [
                    index.eq(0), ip_sum.eq(0), udp_sum.eq(0),
                    mac_ok.eq(1), ethertype_ok.eq(1), version_ok.eq(1), fragment_ok.eq(1),
                    protocol_ok.eq(1), ip_ok.eq(1), port_ok.eq(1), udp_checksum_zero.eq(1),
                ]
                m.next = "RECEIVE"
