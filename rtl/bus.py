"""The SoC's register/memory bus and its subordinates: decoder, register bank, ROM, memory.

The bus is 32 bits wide with word addresses and one transaction at a time. The initiator holds `addr`,
`w_data` and one of `r_en`/`w_en` until the subordinate answers with a one-cycle `ack` (with `r_data` valid
in that cycle); the next request may start in the cycle after `ack`. Every subordinate here acks one
cycle after the request, so a word moves every two cycles — ample for a host link of a few Mbaud.
"""

from amaranth import Module, Signal, Cat, Const, ClockSignal, Instance
from amaranth.lib import wiring, memory
from amaranth.lib.wiring import In, Out

from .memory_map import WORD_BYTES


class BusSignature(wiring.Signature):
    """Initiator's view; subordinates use `BusSignature(...).flip()`."""

    def __init__(self, addr_width):
        if addr_width < 1:
            raise ValueError(f"addr_width must be ≥ 1, not {addr_width}")
        self.addr_width = addr_width
        super().__init__({
            "addr": Out(addr_width),   # word address
            "w_data": Out(32),
            "w_en": Out(1),
            "r_en": Out(1),
            "r_data": In(32),
            "ack": In(1),
        })

    def __eq__(self, other):
        return isinstance(other, BusSignature) and other.addr_width == self.addr_width

    def __repr__(self):
        return f"BusSignature({self.addr_width})"


def _ack_one_cycle_later(m, bus):
    """Acknowledge each request exactly once, one cycle after it started."""
    m.d.sync += bus.ack.eq((bus.r_en | bus.w_en) & ~bus.ack)


class BusDecoder(wiring.Component):
    """Routes the initiator's requests to the subordinate whose region contains the address.

    `regions` are memory_map.Region objects placed on power-of-two boundaries; a request outside every
    region is acknowledged with r_data = 0 (the bridge never issues one: it checks ranges first).
    """

    def __init__(self, addr_width, regions):
        self._regions = list(regions)
        members = {"bus": In(BusSignature(addr_width))}
        for region in self._regions:
            sub_width = max(1, (region.span // WORD_BYTES - 1).bit_length())
            members[region.name] = Out(BusSignature(sub_width))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        hit_any = Signal()
        conditions = []
        for region in self._regions:
            sub = getattr(self, region.name)
            span_words = region.span // WORD_BYTES
            sub_bits = len(sub.addr)
            base_word = region.base // WORD_BYTES
            hit = Signal(name=f"hit_{region.name}")
            m.d.comb += hit.eq((self.bus.addr >> sub_bits) == (base_word >> sub_bits)
                               if span_words > 1 else self.bus.addr == base_word)
            conditions.append(hit)
            m.d.comb += [
                sub.addr.eq(self.bus.addr[:sub_bits]),
                sub.w_data.eq(self.bus.w_data),
                sub.r_en.eq(self.bus.r_en & hit),
                sub.w_en.eq(self.bus.w_en & hit),
            ]
        m.d.comb += hit_any.eq(Cat(conditions).any())
        # Answer requests that hit nothing, so a stray access can never hang the bus.
        stray_ack = Signal()
        m.d.sync += stray_ack.eq((self.bus.r_en | self.bus.w_en) & ~hit_any & ~stray_ack)
        r_data = Const(0, 32)
        ack = stray_ack
        for region in self._regions:
            sub = getattr(self, region.name)
            r_data = r_data | sub.r_data
            ack = ack | sub.ack
        # Subordinates drive r_data only in their ack cycle (zero otherwise), so OR-ing them is a mux.
        m.d.comb += [self.bus.r_data.eq(r_data), self.bus.ack.eq(ack)]
        return m


class BusRom(wiring.Component):
    """Read-only words (the ID/config ROM). Writes are acknowledged and ignored."""

    def __init__(self, words, size_bytes):
        self._words = list(words) + [0] * (size_bytes // WORD_BYTES - len(words))
        addr_width = max(1, (len(self._words) - 1).bit_length())
        super().__init__({"bus": In(BusSignature(addr_width))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = rom = memory.Memory(shape=32, depth=len(self._words), init=self._words)
        port = rom.read_port()
        m.d.comb += port.addr.eq(self.bus.addr)
        _ack_one_cycle_later(m, self.bus)
        with m.If(self.bus.ack):
            m.d.comb += self.bus.r_data.eq(port.data)
        return m


#: SB_SPRAM256KA, the iCE40 UltraPlus single-port RAM: 16K words of 16 bits (32 KiB); the UP5K has four.
SPRAM_DEPTH = 16384
SPRAM_COUNT = 4
#: From this size on, a BusMemory on an iCE40 UltraPlus part is built from SPRAMs instead of block RAM.
SPRAM_MIN_BYTES = 32 * 1024


def uses_ice40_spram(platform, size_bytes) -> bool:
    """Whether a BusMemory of `size_bytes` elaborated for `platform` is built from iCE40 SPRAMs."""
    device = getattr(platform, "device", None)
    return isinstance(device, str) and device.startswith("iCE40UP") and size_bytes >= SPRAM_MIN_BYTES


class BusMemory(wiring.Component):
    """A single-port RAM of 32-bit words on the bus (lib.memory; maps to block RAM).

    On an iCE40 UltraPlus platform a memory of 32 KiB or more is built from SB_SPRAM256KA primitives
    instead (two side by side per 16K words; the part's 15 KiB of block RAM could not hold it). Both forms
    have the same ports and timing: data of a read in the ack cycle, one write per request. (`r_data` in a
    write's ack cycle is the old word with block RAM and undefined with SPRAM; initiators ignore it.)
    """

    def __init__(self, size_bytes):
        self.depth = size_bytes // WORD_BYTES
        addr_width = max(1, (self.depth - 1).bit_length())
        super().__init__({"bus": In(BusSignature(addr_width))})

    def elaborate(self, platform):
        if uses_ice40_spram(platform, self.depth * WORD_BYTES):
            return self._elaborate_spram()
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=32, depth=self.depth, init=[])
        r = mem.read_port()
        w = mem.write_port()
        m.d.comb += [
            r.addr.eq(self.bus.addr), w.addr.eq(self.bus.addr), w.data.eq(self.bus.w_data),
            w.en.eq(self.bus.w_en & ~self.bus.ack),
        ]
        _ack_one_cycle_later(m, self.bus)
        with m.If(self.bus.ack):
            m.d.comb += self.bus.r_data.eq(r.data)
        return m

    def _elaborate_spram(self):
        m = Module()
        banks = -(-self.depth // SPRAM_DEPTH)
        if 2 * banks > SPRAM_COUNT:
            raise ValueError(f"a {self.depth * WORD_BYTES // 1024} KiB BusMemory needs {2 * banks} SPRAMs; "
                             f"an iCE40 UltraPlus has {SPRAM_COUNT} (at most "
                             f"{SPRAM_COUNT // 2 * SPRAM_DEPTH * WORD_BYTES // 1024} KiB)")
        bus = self.bus
        request = Signal()
        word_addr = Signal(14)
        m.d.comb += [request.eq((bus.r_en | bus.w_en) & ~bus.ack), word_addr.eq(bus.addr)]
        bank = Signal(range(banks))
        if banks > 1:
            m.d.comb += bank.eq(bus.addr[14:])
        bank_data = []
        for b in range(banks):
            selected = Signal(name=f"spram{b}_selected")
            m.d.comb += selected.eq(request & (bank == b))
            halves = []
            for half in range(2):
                data_out = Signal(16, name=f"spram{b}_{half}_data")
                m.submodules[f"spram{b}_{half}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=word_addr,
                    i_DATAIN=bus.w_data[16 * half:16 * (half + 1)],
                    i_MASKWREN=Const(0b1111, 4),
                    i_WREN=selected & bus.w_en,
                    i_CHIPSELECT=selected,
                    i_CLOCK=ClockSignal("sync"),
                    i_STANDBY=Const(0),
                    i_SLEEP=Const(0),
                    i_POWEROFF=Const(1),   # active low: 1 keeps the SPRAM powered
                    o_DATAOUT=data_out,
                )
                halves.append(data_out)
            bank_data.append(Cat(*halves))
        _ack_one_cycle_later(m, bus)
        # The initiator holds the address through the ack cycle, so it still selects the bank that was read.
        with m.If(bus.ack):
            with m.Switch(bank):
                for b in range(banks):
                    with m.Case(b):
                        m.d.comb += bus.r_data.eq(bank_data[b])
        return m


class RegisterBank(wiring.Component):
    """Registers of one map region, built from memory_map.Register declarations.

    For each "rw" register the bank holds the value and exposes it as an output port of the same name, with
    a one-cycle `<name>_written` strobe on each bus write; writes outside the register's declared range
    are ignored. For each "ro" register the bank exposes an
    input port of the same name whose value a bus read returns, and a one-cycle `<name>_read` strobe.
    """

    def __init__(self, region):
        self.region = region
        members = {"bus": In(BusSignature(max(1, (len(region.registers) - 1).bit_length())))}
        for reg in region.registers:
            if reg.access == "rw":
                members[reg.name] = Out(32, init=reg.init)
                members[f"{reg.name}_written"] = Out(1)
            else:
                members[reg.name] = In(32)
                members[f"{reg.name}_read"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        _ack_one_cycle_later(m, self.bus)
        request = ~self.bus.ack
        read_data = Signal(32)
        with m.Switch(self.bus.addr):
            for index, reg in enumerate(self.region.registers):
                with m.Case(index):
                    value = getattr(self, reg.name)
                    if reg.access == "rw":
                        in_range = (self.bus.w_data >= reg.minimum) & (self.bus.w_data <= reg.maximum)
                        with m.If(self.bus.w_en & request & in_range):
                            m.d.sync += value.eq(self.bus.w_data)
                            m.d.comb += getattr(self, f"{reg.name}_written").eq(1)
                    else:
                        m.d.comb += getattr(self, f"{reg.name}_read").eq(self.bus.r_en & request)
                    with m.If(self.bus.r_en & request):
                        m.d.sync += read_data.eq(value)
        with m.If(self.bus.ack):
            m.d.comb += self.bus.r_data.eq(read_data)
        return m
