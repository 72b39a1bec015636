"""Message-level link model for ring simulations, and a ring of engines wired through it.

`LinkModel`: one node's UDP port into a switch. It takes datagrams from the engine's message interface
(`tx_length`, `tx_peer`, `tx`), stores each whole (as the UDP layer does before it can send), serializes it
on a 1 GbE wire (one byte per cycle plus `nic_format` Ethernet/IPv4/UDP framing, minimum frame size and
inter-frame gap), and delivers it `latency` cycles after the wire finished, on `o` (bytes with `last`, and
`o_peer` to say which neighbour it is for). A seeded LFSR drops datagrams with probability
`drop / 2**32` and corrupts them with probability `corrupt / 2**32` (xorshift32, seeded) (a corrupted frame fails its FCS, so the
receiving UDP layer drops it: corruption-as-drop, counted separately); `dead` drops everything.

`RingFabric(n)`: n `RingEngine`s, node i's rank hard-wired to i, each behind a `LinkModel`; a node's
receive port takes datagrams for it from both neighbours (one datagram at a time, round robin).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .nic_format import ETH_MIN_FRAME
from .ring_engine import STATS_LAYOUT, FrameByte, RingEngine

__all__ = ["LinkModel", "RingFabric", "LINK_STATS_LAYOUT", "wire_ring"]

LINK_STATS_LAYOUT = data.StructLayout({
    "frames": 32, "bytes": 32, "dropped": 32, "corrupted": 32, "busy_until": 32,
})

_DESCRIPTOR = data.StructLayout({"length": 16, "peer": 1, "drop": 1, "due": 32})


class LinkModel(wiring.Component):
    def __init__(self, *, latency: int = 64, buffer_bytes: int = 8192, index: int = 0):
        if latency < 0:
            raise ValueError(f"latency must be ≥ 0, not {latency}")
        self.latency = latency
        self.buffer_bytes = buffer_bytes
        self.index = index
        super().__init__({
            "tx_length": In(stream.Signature(unsigned(16))),
            "tx_peer": In(1),
            "tx": In(stream.Signature(FrameByte)),
            "o": Out(stream.Signature(FrameByte)),
            "o_peer": Out(1),
            "seed": In(32), "load_seed": In(1),
            "drop": In(32), "corrupt": In(32), "dead": In(1),
            "stats": Out(LINK_STATS_LAYOUT),
            "idle": Out(1),           # no datagram held or half captured
        })

    def elaborate(self, platform):
        m = Module()
        now = Signal(32)
        m.d.sync += now.eq(now + 1)
        m.submodules.bytes = byte_fifo = SyncFIFOBuffered(width=9, depth=self.buffer_bytes)
        m.submodules.desc = desc_fifo = SyncFIFOBuffered(width=_DESCRIPTOR.size, depth=16)
        stats = Signal(LINK_STATS_LAYOUT)
        m.d.comb += self.stats.eq(stats)

        # xorshift32 (Marsaglia), two steps per datagram: one draw for the drop, one for the corruption.
        # (An LFSR's successive states are shifted copies of each other, which would make losses bursty.)
        def xorshift(x):
            x = x ^ (x << 13)[:32]
            x = x ^ (x >> 17)
            return x ^ (x << 5)[:32]

        lfsr = Signal(32, init=1)
        lfsr_next = Signal(32)
        lfsr2 = Signal(32)
        m.d.comb += [lfsr_next.eq(xorshift(lfsr)), lfsr2.eq(xorshift(lfsr_next))]
        with m.If(self.load_seed):
            m.d.sync += lfsr.eq(Mux(self.seed == 0, 1, self.seed))

        # --- capture ---------------------------------------------------------------------------------------
        length = Signal(16)
        peer = Signal()
        wire_free = Signal(32)
        with m.FSM() as capture:
            with m.State("LENGTH"):
                m.d.comb += self.tx_length.ready.eq(desc_fifo.w_rdy)
                with m.If(self.tx_length.valid & desc_fifo.w_rdy):
                    m.d.sync += [length.eq(self.tx_length.payload), peer.eq(self.tx_peer)]
                    m.next = "BYTES"
            with m.State("BYTES"):
                m.d.comb += [byte_fifo.w_en.eq(self.tx.valid), byte_fifo.w_data.eq(self.tx.payload),
                             self.tx.ready.eq(byte_fifo.w_rdy)]
                with m.If(self.tx.valid & self.tx.ready & self.tx.payload.last):
                    frame = Mux(length + 46 < ETH_MIN_FRAME, ETH_MIN_FRAME, length + 46) + 20
                    start = Mux(wire_free > now, wire_free, now)
                    drop = Signal(_DESCRIPTOR)
                    corrupt = lfsr2 < self.corrupt
                    m.d.comb += [drop.length.eq(length), drop.peer.eq(peer),
                                 drop.drop.eq((lfsr_next < self.drop) | corrupt | self.dead),
                                 drop.due.eq(start + frame + self.latency),
                                 desc_fifo.w_en.eq(1), desc_fifo.w_data.eq(drop)]
                    m.d.sync += [wire_free.eq(start + frame), stats.frames.eq(stats.frames + 1),
                                 stats.bytes.eq(stats.bytes + frame), stats.busy_until.eq(start + frame)]
                    with m.If(~self.load_seed):
                        m.d.sync += lfsr.eq(lfsr2)
                    with m.If(self.dead | (lfsr_next < self.drop)):
                        m.d.sync += stats.dropped.eq(stats.dropped + 1)
                    with m.Elif(corrupt):
                        m.d.sync += stats.corrupted.eq(stats.corrupted + 1)
                    m.next = "LENGTH"

        m.d.comb += self.idle.eq(capture.ongoing("LENGTH") & ~desc_fifo.r_rdy & ~byte_fifo.r_rdy)

        # --- delivery ------------------------------------------------------------------------------------
        head = data.View(_DESCRIPTOR, desc_fifo.r_data)
        due = desc_fifo.r_rdy & (now >= head.due)
        byte = data.View(FrameByte, byte_fifo.r_data)
        m.d.comb += self.o_peer.eq(head.peer)
        with m.If(due):
            with m.If(head.drop):
                m.d.comb += byte_fifo.r_en.eq(1)
            with m.Else():
                m.d.comb += [self.o.valid.eq(byte_fifo.r_rdy), self.o.payload.eq(byte_fifo.r_data),
                             byte_fifo.r_en.eq(self.o.ready)]
            with m.If(byte_fifo.r_rdy & byte_fifo.r_en & byte.last):
                m.d.comb += desc_fifo.r_en.eq(1)
        return m


class RingFabric(wiring.Component):
    """n engines and their links; per-node ports are indexed arrays of the engine's ports.

    `link="message"`: each engine's datagrams go through a `LinkModel`. `link="gmii"`: each engine sits
    behind its own `UdpEndpoint` (node i: MAC/IP `nic_format.default_mac(i)` / `default_ip(i)`, port
    `DEFAULT_UDP_PORT`) and the GMII ports meet in a `GmiiSwitch` — the frames, FCS and store-and-forward
    of the real NIC. `world` may be less than n: nodes ≥ world then stay out of the ring."""

    def __init__(self, n: int, *, latency: int = 64, link: str = "message", **engine_args):
        if n < 2:
            raise ValueError(f"a ring needs at least 2 nodes, not {n}")
        if link not in ("message", "gmii"):
            raise ValueError(f"link must be 'message' or 'gmii', not {link!r}")
        self.n = n
        self.link = link
        self.latency = latency
        self.engines = [RingEngine(**engine_args) for _ in range(n)]
        e = self.engines[0]
        ports = {
            "world": In(8), "job": In(16), "chunk": In(32), "frame": In(16), "frames_per_chunk": In(16),
            "slice_frames": In(8), "rs_codec": In(2), "ag_codec": In(2), "timeout": In(32), "rto": In(32),
            "ack_every": In(8), "ack_delay": In(16), "start": In(1),
            "seed": In(32), "load_seed": In(1), "drop": In(32), "corrupt": In(32), "dead": In(n),
            "stall": In(8),     # probability × 256 that a node's tx/rx handshakes are blocked in a cycle
        }
        for i in range(n):
            ports[f"status{i}"] = Out(2)
            ports[f"error{i}"] = Out(4)
            ports[f"stats{i}"] = Out(STATS_LAYOUT)
            ports[f"link{i}"] = Out(LINK_STATS_LAYOUT)
            ports[f"host_addr{i}"] = In(range(e.vector_depth))
            ports[f"host_wdata{i}"] = In(32)
            ports[f"host_we{i}"] = In(1)
            ports[f"host_rdata{i}"] = Out(32)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        n = self.n
        links = []
        rx_ports = []
        if self.link == "gmii":
            from .gmii_switch import GmiiSwitch
            m.submodules.switch = switch = GmiiSwitch(n, latency=self.latency)
            m.d.comb += [switch.seed.eq(self.seed), switch.load_seed.eq(self.load_seed), switch.drop.eq(self.drop),
                         switch.corrupt.eq(self.corrupt), switch.dead.eq(self.dead)]
        for i, engine in enumerate(self.engines):
            m.submodules[f"engine{i}"] = engine
            if self.link == "gmii":
                link = self._udp_node(m, i, engine, switch)
            else:
                m.submodules[f"link{i}"] = link = LinkModel(latency=self.latency, index=i)
                links.append(link)
                m.d.comb += [getattr(self, f"link{i}").eq(link.stats),
                             link.seed.eq(self.seed + i * 0x9E3779B9), link.load_seed.eq(self.load_seed),
                             link.drop.eq(self.drop), link.corrupt.eq(self.corrupt), link.dead.eq(self.dead[i]),
                             link.tx_peer.eq(engine.tx_peer)]
            for name in ("world", "job", "chunk", "frame", "frames_per_chunk", "slice_frames", "rs_codec",
                         "ag_codec", "timeout", "rto", "ack_every", "ack_delay", "start"):
                m.d.comb += getattr(engine, name).eq(getattr(self, name))
            m.d.comb += [engine.rank.eq(i),
                         getattr(self, f"status{i}").eq(engine.status),
                         getattr(self, f"error{i}").eq(engine.error),
                         getattr(self, f"stats{i}").eq(engine.stats),
                         engine.host_addr.eq(getattr(self, f"host_addr{i}")),
                         engine.host_wdata.eq(getattr(self, f"host_wdata{i}")),
                         engine.host_we.eq(getattr(self, f"host_we{i}")),
                         getattr(self, f"host_rdata{i}").eq(engine.host_rdata)]
            # Random backpressure and idle gaps between each engine and its link (an LFSR per node).
            lfsr = Signal(16, init=0xACE1 ^ (i * 0x1F35), name=f"stall_lfsr{i}")
            m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[2] ^ lfsr[3] ^ lfsr[5]))
            block = Signal(name=f"block{i}")
            m.d.comb += block.eq(lfsr[8:16] < self.stall)
            rx = stream.Signature(FrameByte).create(path=(f"rx{i}",))
            m.d.comb += [link.tx_length.valid.eq(engine.tx_length.valid & ~block),
                         link.tx_length.payload.eq(engine.tx_length.payload),
                         engine.tx_length.ready.eq(link.tx_length.ready & ~block),
                         link.tx.valid.eq(engine.tx.valid & ~block), link.tx.payload.eq(engine.tx.payload),
                         engine.tx.ready.eq(link.tx.ready & ~block),
                         engine.rx.valid.eq(rx.valid & ~block), engine.rx.payload.eq(rx.payload),
                         rx.ready.eq(engine.rx.ready & ~block)]
            rx_ports.append(rx)
            if self.link == "gmii":
                m.d.comb += [rx.valid.eq(link.rx.valid), rx.payload.eq(link.rx.payload),
                             link.rx.ready.eq(rx.ready)]

        if self.link == "message":
            wire_ring(m, rx_ports, links)
        return m

    def _udp_node(self, m, i, engine, switch):
        """Node i's UdpEndpoint: its addresses, its neighbours' by `world`, its GMII ports on the switch."""
        from .nic_format import DEFAULT_UDP_PORT, default_ip, default_mac
        from .udp import UdpEndpoint
        m.submodules[f"udp{i}"] = udp = UdpEndpoint(max_payload=self.engines[i].max_payload)
        succ = Mux(i + 1 >= self.world, 0, i + 1)
        pred = Mux(i == 0, self.world - 1, i - 1)
        peer = Mux(engine.tx_peer, pred, succ)[:8]
        m.d.comb += [udp.config.local_mac.eq(default_mac(i)), udp.config.local_ip.eq(default_ip(i)),
                     udp.config.local_port.eq(DEFAULT_UDP_PORT),
                     udp.tx_dst.mac.eq(default_mac(0) | peer), udp.tx_dst.ip.eq(default_ip(0) + peer),
                     udp.tx_dst.port.eq(DEFAULT_UDP_PORT)]
        stats = getattr(switch, f"stats{i}")
        ours = getattr(self, f"link{i}")
        m.d.comb += [ours.frames.eq(stats.frames), ours.bytes.eq(stats.bytes), ours.dropped.eq(stats.dropped),
                     ours.corrupted.eq(stats.corrupted)]
        wiring.connect(m, udp.gmii_tx, getattr(switch, f"rx{i}"))
        wiring.connect(m, getattr(switch, f"tx{i}"), udp.gmii_rx)
        return udp


def wire_ring(m, rx_ports, links):
    """Deliver each link's datagrams: node j's `rx` takes them from link j−1 (DATA, peer 0) and link j+1
    (ACK, peer 1), one whole datagram at a time, alternating when both wait."""
    n = len(rx_ports)
    owners = []
    for j, rx in enumerate(rx_ports):
        sources = [(links[(j - 1) % n], 0), (links[(j + 1) % n], 1)]
        owner = Signal(2, name=f"rx{j}_owner")          # 0 none, 1 from the predecessor, 2 successor
        owners.append(owner)
        want = [link.o.valid & (link.o_peer == peer) for link, peer in sources]
        turn = Signal(name=f"rx{j}_turn")
        with m.If(owner == 0):
            with m.If(want[0] & (~want[1] | ~turn)):
                m.d.sync += [owner.eq(1), turn.eq(1)]
            with m.Elif(want[1]):
                m.d.sync += [owner.eq(2), turn.eq(0)]
        for index, (link, peer) in enumerate(sources):
            with m.If(owner == index + 1):
                m.d.comb += [rx.valid.eq(link.o.valid), rx.payload.eq(link.o.payload)]
                with m.If(rx.ready & link.o.valid & link.o.payload.last):
                    m.d.sync += owner.eq(0)
    # A link's output is read by the receiver its head datagram is for.
    for i, link in enumerate(links):
        successor, predecessor = (i + 1) % n, (i - 1) % n
        ready_s = rx_ports[successor].ready & (owners[successor] == 1) & (link.o_peer == 0)
        ready_p = rx_ports[predecessor].ready & (owners[predecessor] == 2) & (link.o_peer == 1)
        m.d.comb += link.o.ready.eq(ready_s | ready_p)
