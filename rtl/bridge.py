"""Host bridge: the framed, CRC-checked request/response protocol of docs/host-link.md, in gateware.

Takes request bytes on `rx`, drives the SoC bus, answers on `tx`. Guarantees:
- a header whose CRC fails is dropped and the parser hunts for the next sync byte;
- READ/WRITE are validated (opcode → alignment → length → range → read-only) before anything happens;
- WRITE payloads are buffered and committed only after their CRC matched (nothing partial reaches the bus);
- a retried WRITE (same header CRC and payload CRC as the last executed one) is answered OK, not re-executed;
- a frame that goes quiet for `resync_cycles` cycles is dropped (0 disables the timeout);
- one request at a time; a response is always complete before the next request byte is taken.
Throughput: one byte per cycle on rx and tx; the bus moves one word per two cycles.
"""

from amaranth import Module, Signal, Cat, C
from amaranth.lib import wiring, stream, memory, crc
from amaranth.lib.wiring import In, Out

from .bus import BusSignature
from .link_format import SYNC_REQUEST, SYNC_RESPONSE, Op, Status, WORD_BYTES
from .memory_map import MemoryMap


class HostBridge(wiring.Component):
    def __init__(self, memory_map: MemoryMap, max_transfer: int):
        if max_transfer % WORD_BYTES or not 4 <= max_transfer <= 0xFFFC:
            raise ValueError(f"max_transfer={max_transfer} must be a multiple of 4 in 4…65532")
        self._map = memory_map
        self.max_transfer = max_transfer
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "bus": Out(BusSignature(memory_map.address_bits - 2)),
            "resync_cycles": In(32),
            "idle": Out(1),
            "receiving": Out(1),     # inside a request frame, waiting for its next byte
            "requests": Out(32),
            "header_errors": Out(32),
            "payload_errors": Out(32),
            "resyncs": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx_crc = rx_crc = crc.catalog.CRC32_ISO_HDLC(data_width=8).create()
        m.submodules.tx_crc = tx_crc = crc.catalog.CRC32_ISO_HDLC(data_width=8).create()
        words = self.max_transfer // WORD_BYTES
        m.submodules.buffer = buffer = memory.Memory(shape=32, depth=words, init=[])
        buf_w = buffer.write_port()
        buf_r = buffer.read_port()

        rx, tx, bus = self.rx, self.tx, self.bus
        rx_byte = rx.payload
        rx_take = Signal()                     # a request byte is consumed this cycle
        m.d.comb += rx_take.eq(rx.valid & rx.ready)

        # Request header as received: op, seq, addr, length (little-endian, 8 bytes).
        header = Signal(64)
        op, seq, addr, length = header[0:8], header[8:16], header[16:48], header[48:64]
        crc_in = Signal(32)                    # a received CRC, shifted in LSB first
        header_crc = Signal(32)
        count = Signal(range(0x10000 + 8))      # byte counter within the current field
        word = Signal(32)                      # payload word being assembled
        word_index = Signal(range(words + 1))
        bus_addr = Signal(len(bus.addr))
        status = Signal(8)
        resp_len = Signal(16)
        tx_index = Signal(4)
        out_word = Signal(32)
        first_data = Signal()
        last_valid = Signal()
        last_header_crc = Signal(32)
        last_payload_crc = Signal(32)

        # Validation of a trusted header, in the documented order.
        end = Signal(33)
        m.d.comb += end.eq(addr + length)
        in_region = Signal()
        read_only = Signal()
        for region in self._map.regions:
            hit = (addr >= region.base) & (end <= region.end)
            with m.If(hit):
                m.d.comb += [in_region.eq(1), read_only.eq(int(region.read_only))]
        verdict = Signal(8)
        with m.If((op != Op.NOP) & (op != Op.READ) & (op != Op.WRITE)):
            m.d.comb += verdict.eq(Status.BAD_OPCODE)
        with m.Elif(op == Op.NOP):
            m.d.comb += verdict.eq(Status.OK)
        with m.Elif(addr[0:2] != 0):
            m.d.comb += verdict.eq(Status.BAD_ALIGNMENT)
        with m.Elif((length == 0) | (length > self.max_transfer) | (length[0:2] != 0)):
            m.d.comb += verdict.eq(Status.BAD_LENGTH)
        with m.Elif(~in_region):
            m.d.comb += verdict.eq(Status.BAD_ADDRESS)
        with m.Elif((op == Op.WRITE) & read_only):
            m.d.comb += verdict.eq(Status.READ_ONLY)
        with m.Else():
            m.d.comb += verdict.eq(Status.OK)

        # Idle resync: a partial frame that goes quiet is dropped.
        quiet = Signal(32)
        mid_frame = Signal()
        timed_out = Signal()
        with m.If(rx_take | ~mid_frame):
            m.d.sync += quiet.eq(0)
        with m.Else():
            m.d.sync += quiet.eq(quiet + 1)
        m.d.comb += timed_out.eq(mid_frame & (self.resync_cycles != 0) & (quiet >= self.resync_cycles))
        m.d.comb += self.receiving.eq(mid_frame)

        m.d.comb += [
            rx_crc.data.eq(rx_byte),
            buf_w.addr.eq(count[2:]),
            buf_w.data.eq(Cat(word[8:32], rx_byte)),
            buf_r.addr.eq(word_index),
            bus.addr.eq(bus_addr),
        ]

        def respond(code, nbytes=0):
            m.d.sync += [status.eq(code), resp_len.eq(nbytes), tx_index.eq(0)]
            m.next = "RESPOND"

        def goto(state):
            m.next = state

        def receive(last, on_last, store=None):
            """Take request bytes (shifting each into `store` from the top, feeding the CRC) and call
            `on_last` after byte number `last`; a frame that goes quiet is dropped."""
            m.d.comb += [mid_frame.eq(1), rx.ready.eq(1), rx_crc.valid.eq(rx_take)]
            with m.If(rx_take):
                m.d.sync += count.eq(count + 1)
                if store is not None:
                    m.d.sync += store.eq(Cat(store[8:], rx_byte))
                with m.If(count == last):
                    m.d.sync += count.eq(0)
                    on_last()
            with m.Elif(timed_out):
                m.d.sync += self.resyncs.eq(self.resyncs + 1)
                m.next = "HUNT"

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += [self.idle.eq(1), rx.ready.eq(1)]
                with m.If(rx_take & (rx_byte == SYNC_REQUEST)):
                    m.d.comb += rx_crc.start.eq(1)
                    m.d.sync += count.eq(0)
                    m.next = "HEADER"

            with m.State("HEADER"):
                receive(7, lambda: goto("HEADER_CRC"), store=header)

            with m.State("HEADER_CRC"):
                receive(3, lambda: goto("CHECK_HEADER"), store=crc_in)

            with m.State("CHECK_HEADER"):
                m.d.sync += [header_crc.eq(crc_in), bus_addr.eq(addr[2:]), count.eq(0),
                             word_index.eq(0)]
                with m.If(~rx_crc.match_detected):
                    m.d.sync += self.header_errors.eq(self.header_errors + 1)
                    m.next = "HUNT"
                with m.Elif(op == Op.NOP):
                    m.d.sync += last_valid.eq(0)
                    respond(Status.OK)
                with m.Elif(op == Op.READ):
                    with m.If(verdict == Status.OK):
                        respond(Status.OK, length)
                    with m.Else():
                        respond(verdict)
                with m.Elif(op == Op.WRITE):
                    m.d.sync += status.eq(verdict)
                    with m.If(verdict == Status.OK):
                        m.next = "PAYLOAD"
                    with m.Elif(length == 0):
                        respond(verdict)     # a zero-length WRITE carries no payload and no CRC
                    with m.Else():
                        m.next = "DISCARD"
                with m.Else():
                    respond(verdict)

            with m.State("PAYLOAD"):
                m.d.comb += [rx_crc.start.eq(count == 0), buf_w.en.eq(rx_take & (count[0:2] == 3))]
                receive(length - 1, lambda: goto("PAYLOAD_CRC"), store=word)

            with m.State("PAYLOAD_CRC"):
                receive(3, lambda: goto("CHECK_PAYLOAD"), store=crc_in)

            with m.State("CHECK_PAYLOAD"):
                with m.If(~rx_crc.match_detected):
                    m.d.sync += self.payload_errors.eq(self.payload_errors + 1)
                    respond(Status.CRC_ERROR)
                with m.Elif(last_valid & (last_header_crc == header_crc) & (last_payload_crc == crc_in)):
                    respond(Status.OK)       # a retry of the write we already executed
                with m.Else():
                    m.next = "COMMIT_FETCH"

            with m.State("COMMIT_FETCH"):      # buffer read port presents word_index next cycle
                m.next = "COMMIT_WRITE"

            with m.State("COMMIT_WRITE"):
                m.d.comb += [bus.w_data.eq(buf_r.data), bus.w_en.eq(1)]
                with m.If(bus.ack):
                    m.d.sync += [bus_addr.eq(bus_addr + 1), word_index.eq(word_index + 1)]
                    with m.If(word_index == (length >> 2) - 1):
                        m.d.sync += [last_valid.eq(1), last_header_crc.eq(header_crc),
                                     last_payload_crc.eq(crc_in)]
                        respond(Status.OK)
                    with m.Else():
                        m.next = "COMMIT_FETCH"

            with m.State("DISCARD"):          # a rejected WRITE: consume its payload and CRC exactly
                receive(length + 3, lambda: respond(status))

            with m.State("RESPOND"):          # sync, status, seq, length (LE), header CRC (LE)
                header_bytes = [C(SYNC_RESPONSE, 8), status, seq, resp_len[0:8], resp_len[8:16]]
                crc_bytes = [tx_crc.crc[8 * i: 8 * i + 8] for i in range(4)]
                m.d.comb += tx.valid.eq(1)
                with m.Switch(tx_index):
                    for i, value in enumerate(header_bytes + crc_bytes):
                        with m.Case(i):
                            m.d.comb += tx.payload.eq(value)
                m.d.comb += [tx_crc.data.eq(tx.payload),
                             tx_crc.valid.eq(tx.ready & (tx_index >= 1) & (tx_index <= 4)),
                             tx_crc.start.eq(tx_index == 1)]
                with m.If(tx.ready):
                    m.d.sync += tx_index.eq(tx_index + 1)
                    with m.If(tx_index == 8):
                        m.d.sync += [count.eq(0), first_data.eq(1)]
                        with m.If(resp_len == 0):
                            m.next = "DONE"
                        with m.Else():
                            m.next = "READ_WORD"

            with m.State("READ_WORD"):
                m.d.comb += bus.r_en.eq(1)
                with m.If(bus.ack):
                    m.d.sync += [out_word.eq(bus.r_data), bus_addr.eq(bus_addr + 1), tx_index.eq(0)]
                    m.next = "SEND_WORD"

            with m.State("SEND_WORD"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(out_word.word_select(tx_index[0:2], 8)),
                             tx_crc.data.eq(tx.payload), tx_crc.valid.eq(tx.ready),
                             tx_crc.start.eq(first_data)]
                with m.If(tx.ready):
                    m.d.sync += [tx_index.eq(tx_index + 1), first_data.eq(0), count.eq(count + 1)]
                    with m.If(tx_index == 3):
                        with m.If(count == resp_len - 1):
                            m.d.sync += tx_index.eq(0)
                            m.next = "SEND_CRC"
                        with m.Else():
                            m.next = "READ_WORD"

            with m.State("SEND_CRC"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(tx_crc.crc.word_select(tx_index[0:2], 8))]
                with m.If(tx.ready):
                    m.d.sync += tx_index.eq(tx_index + 1)
                    with m.If(tx_index == 3):
                        m.next = "DONE"

            with m.State("DONE"):
                m.d.sync += self.requests.eq(self.requests + 1)
                m.next = "HUNT"

        return m
