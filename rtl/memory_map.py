"""The SoC's memory map, declared once: regions, registers, the ID/config ROM, and their JSON export.

Addresses are assigned by `MemoryMapBuilder` (never by hand): each region is aligned to its size rounded up
to a power of two, so the bus decoder compares upper address bits only. The host rebuilds the same map from
the parameters it reads out of the device's ID ROM and compares hashes, so a stale bitstream is refused.

This module is pure Python (no gateware): gateware, host and models all import it.
"""

import dataclasses
import hashlib
import json

#: Bumped whenever the ROM layout or the meaning of an existing register changes.
FORMAT_VERSION = 1
#: "TNIC" read as a little-endian 32-bit word.
MAGIC = int.from_bytes(b"TNIC", "little")
WORD_BYTES = 4
ROM_BYTES = 256
#: ROM layout (word offsets): magic, format version, map hash, number of entries, then (tag, value) pairs.
ROM_MAGIC, ROM_VERSION, ROM_HASH, ROM_COUNT, ROM_ENTRIES = range(5)


def fourcc(tag: str) -> int:
    if len(tag) != 4 or not tag.isascii():
        raise ValueError(f"ROM tag {tag!r} must be 4 ASCII characters")
    return int.from_bytes(tag.encode(), "little")


@dataclasses.dataclass(frozen=True)
class SocConfig:
    """Generator parameters of the SoC. Every field is published in the ID ROM under its tag."""

    clock_hz: int = 48_000_000
    baud: int = 3_000_000
    scratch_bytes: int = 64 * 1024
    max_transfer: int = 4096
    #: Contraction engine (docs/contraction-engine.md): array rows × cols (0 × 0: no engine), input bits,
    #: loops per descriptor, tile (scratchpad) and K-chunk sizes, queue slots, tensor memory bytes.
    engine_rows: int = 0
    engine_cols: int = 0
    engine_width: int = 8
    engine_loops: int = 8
    engine_tile_m: int = 64
    engine_tile_n: int = 64
    engine_chunk_k: int = 256
    engine_queue: int = 4
    tensor_bytes: int = 0
    #: All-reduce NIC (docs/nic.md): vector memory words (0: no NIC), retransmission window (frames),
    #: largest UDP payload, MXINT8 block size.
    nic_vector_words: int = 0
    nic_window: int = 16
    nic_max_payload: int = 1472
    nic_mx_block: int = 32

    #: field name → ROM tag (4 ASCII characters). Later engines append their parameters here.
    TAGS = {"clock_hz": "CLKH", "baud": "BAUD", "scratch_bytes": "SCRB", "max_transfer": "MXFR",
            "engine_rows": "ENGR", "engine_cols": "ENGC", "engine_width": "ENGW", "engine_loops": "ENGL",
            "engine_tile_m": "ENTM", "engine_tile_n": "ENTN", "engine_chunk_k": "ENKC",
            "engine_queue": "ENGQ", "tensor_bytes": "TNSB",
            "nic_vector_words": "NICV", "nic_window": "NICW", "nic_max_payload": "NICP", "nic_mx_block": "NICK"}

    def __post_init__(self):
        if self.clock_hz < 1_000_000:
            raise ValueError(f"clock_hz={self.clock_hz} is below 1 MHz; give the core clock in Hz")
        if self.baud <= 0 or self.clock_hz / self.baud < 4:
            raise ValueError(f"baud={self.baud} needs at least 4 clock cycles per bit at "
                             f"clock_hz={self.clock_hz}; lower the baud rate or raise the clock")
        if self.scratch_bytes < 4096 or self.scratch_bytes & (self.scratch_bytes - 1):
            raise ValueError(f"scratch_bytes={self.scratch_bytes} must be a power of two ≥ 4096")
        if not (4 <= self.max_transfer <= 0xFFFC) or self.max_transfer % WORD_BYTES:
            raise ValueError(f"max_transfer={self.max_transfer} must be a multiple of 4 in 4…65532")
        if self.has_engine:
            # The engine checks the rest of its parameters itself (rtl/contraction_engine.py).
            if self.engine_rows < 1 or self.engine_cols < 1:
                raise ValueError(f"engine array {self.engine_rows}×{self.engine_cols}: both sides must be ≥ 1 "
                                 f"(or both 0 for no engine)")
            if self.tensor_bytes < 4096 or self.tensor_bytes & (self.tensor_bytes - 1):
                raise ValueError(f"tensor_bytes={self.tensor_bytes} must be a power of two ≥ 4096 "
                                 f"when the SoC has an engine")
        if self.has_nic:
            # The NIC checks the rest of its parameters itself (rtl/ring_engine.py).
            if self.nic_vector_words < 64 or self.nic_vector_words & (self.nic_vector_words - 1):
                raise ValueError(f"nic_vector_words={self.nic_vector_words} must be a power of two ≥ 64 "
                                 f"(or 0 for no NIC)")

    @property
    def has_nic(self) -> bool:
        return self.nic_vector_words != 0

    @property
    def has_engine(self) -> bool:
        return bool(self.engine_rows or self.engine_cols)

    def engine_params(self) -> dict:
        """Keyword arguments of rtl.contraction_engine.ContractionEngine for this configuration."""
        return dict(rows=self.engine_rows, cols=self.engine_cols, width=self.engine_width,
                    loops=self.engine_loops, tile_m=self.engine_tile_m, tile_n=self.engine_tile_n,
                    chunk_k=self.engine_chunk_k, queue=self.engine_queue, tensor_bytes=self.tensor_bytes)

    @property
    def engine_scratch_bytes(self) -> dict:
        """Scratchpad sizes (bytes, both halves of each double buffer) implied by the parameters."""
        eb = self.engine_width // 8
        return {"a": 2 * self.engine_tile_m * self.engine_chunk_k * eb,
                "b": 2 * self.engine_chunk_k * self.engine_tile_n * eb}

    @property
    def resync_cycles(self) -> int:
        """Default idle time after which the bridge drops a partial frame: 1/50 s of device clock."""
        return self.clock_hz // 50

    def rom_entries(self):
        return [(self.TAGS[f.name], getattr(self, f.name)) for f in dataclasses.fields(self)]

    @classmethod
    def from_rom_entries(cls, entries):
        """Rebuild a config from decoded ROM (tag, value) pairs; unknown tags are returned separately."""
        by_tag = {tag: name for name, tag in cls.TAGS.items()}
        known, unknown = {}, {}
        for tag, value in entries:
            if tag in by_tag:
                known[by_tag[tag]] = value
            else:
                unknown[tag] = value
        return cls(**known), unknown


@dataclasses.dataclass(frozen=True)
class Register:
    name: str
    access: str            # "rw" or "ro"
    description: str
    init: int = 0
    offset: int = -1       # byte offset within the register region, assigned by the builder
    #: Writable range of an "rw" register: the register bank ignores writes outside it and the host
    #: refuses them, so no single write can put the device out of reach.
    minimum: int = 0
    maximum: int = 0xFFFF_FFFF

    def __post_init__(self):
        if self.access not in ("rw", "ro"):
            raise ValueError(f"register {self.name!r}: access must be 'rw' or 'ro', not {self.access!r}")
        if not 0 <= self.minimum <= self.maximum <= 0xFFFF_FFFF:
            raise ValueError(f"register {self.name!r}: range {self.minimum}…{self.maximum} is not within 32 bits")

    def accepts(self, value) -> bool:
        return self.minimum <= value <= self.maximum


@dataclasses.dataclass(frozen=True)
class Region:
    name: str
    kind: str              # "rom", "registers" or "memory"
    size: int              # bytes
    read_only: bool
    description: str
    base: int = -1
    registers: tuple = ()

    @property
    def end(self):
        return self.base + self.size

    @property
    def span(self):
        """The aligned address window the decoder reserves for this region (size rounded to 2^n)."""
        return 1 << (self.size - 1).bit_length()

    def register(self, name) -> Register:
        for reg in self.registers:
            if reg.name == name:
                return reg
        raise KeyError(f"region {self.name!r} has no register {name!r}; "
                       f"it has {', '.join(r.name for r in self.registers)}")


class MemoryMapBuilder:
    """Assigns addresses in declaration order; each region aligned to its power-of-two span."""

    def __init__(self):
        self._regions = []
        self._next = 0

    def _place(self, region: Region) -> Region:
        if any(r.name == region.name for r in self._regions):
            raise ValueError(f"region name {region.name!r} is used twice")
        if region.size <= 0 or region.size % WORD_BYTES:
            raise ValueError(f"region {region.name!r}: size {region.size} must be a positive multiple of 4")
        span = region.span
        base = (self._next + span - 1) // span * span
        placed = dataclasses.replace(region, base=base)
        self._regions.append(placed)
        self._next = base + span
        return placed

    def add_rom(self, name, size, description):
        return self._place(Region(name, "rom", size, True, description))

    def add_memory(self, name, size, description, read_only=False):
        return self._place(Region(name, "memory", size, read_only, description))

    def add_registers(self, name, registers, description):
        names = [r.name for r in registers]
        if len(set(names)) != len(names):
            raise ValueError(f"register bank {name!r} declares a name twice: {names}")
        placed = tuple(dataclasses.replace(r, offset=i * WORD_BYTES) for i, r in enumerate(registers))
        return self._place(Region(name, "registers", len(placed) * WORD_BYTES, False, description,
                                  registers=placed))

    def build(self, config) -> "MemoryMap":
        return MemoryMap(config, tuple(self._regions))


class MemoryMap:
    def __init__(self, config, regions):
        self.config = config
        self.regions = regions
        self.hash = int.from_bytes(hashlib.sha256(self._canonical().encode()).digest()[:4], "little")

    def region(self, name) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(f"no region {name!r}; regions are {', '.join(r.name for r in self.regions)}")

    def register_address(self, region_name, register_name) -> int:
        region = self.region(region_name)
        return region.base + region.register(register_name).offset

    def find(self, addr, length=WORD_BYTES):
        """The region holding all of [addr, addr+length), or None."""
        for region in self.regions:
            if region.base <= addr and addr + length <= region.end:
                return region
        return None

    @property
    def address_bits(self) -> int:
        top = max(r.base + r.span for r in self.regions)
        return max(1, (top - 1).bit_length())

    def _describe(self):
        return {
            "format_version": FORMAT_VERSION,
            "config": dataclasses.asdict(self.config),
            "regions": [
                {"name": r.name, "kind": r.kind, "base": r.base, "size": r.size, "read_only": r.read_only,
                 "description": r.description,
                 **({"registers": [{"name": g.name, "offset": g.offset, "access": g.access,
                                    "init": g.init, "minimum": g.minimum, "maximum": g.maximum,
                                    "description": g.description}
                                   for g in r.registers]} if r.registers else {})}
                for r in self.regions],
        }

    def _canonical(self):
        return json.dumps(self._describe(), sort_keys=True, separators=(",", ":"))

    def to_json(self) -> str:
        return json.dumps({**self._describe(), "map_hash": f"{self.hash:08x}"}, indent=2)

    def rom_words(self):
        """The ID/config ROM contents as 32-bit words."""
        entries = self.config.rom_entries()
        words = [MAGIC, FORMAT_VERSION, self.hash, len(entries)]
        for tag, value in entries:
            words += [fourcc(tag), value & 0xFFFFFFFF]
        rom = self.region("id")
        if len(words) * WORD_BYTES > rom.size:
            raise ValueError(f"the ID ROM holds {rom.size} bytes but needs {len(words) * WORD_BYTES}")
        return words


def decode_rom(words):
    """Decode ROM words into (magic, version, map_hash, [(tag, value), ...])."""
    magic, version, map_hash, count = words[:4]
    entries = []
    for i in range(min(count, (len(words) - ROM_ENTRIES) // 2)):
        tag = words[ROM_ENTRIES + 2 * i].to_bytes(4, "little").decode("ascii", "replace")
        entries.append((tag, words[ROM_ENTRIES + 2 * i + 1]))
    return magic, version, map_hash, count, entries


#: The spine's control/status registers. The order here is the order of addresses.
SPINE_REGISTERS = (
    Register("test_word", "rw", "Free read/write word for link and bus checks."),
    Register("cycles_lo", "ro", "Free-running cycle counter, low word; reading it latches cycles_hi."),
    Register("cycles_hi", "ro", "High word of the cycle counter as latched by the last cycles_lo read."),
    Register("uart_divisor", "rw", "UART cycles per bit, fixed point with 4 fractional bits (4.0 to "
             "65535.9375 cycles); a write takes effect once the write's response has been sent.",
             minimum=64, maximum=(1 << 20) - 1),
    Register("uart_framing_errors", "ro", "Received bytes dropped for a bad stop bit (wrapping)."),
    Register("uart_overruns", "ro", "Received bytes lost because the bridge did not take them (wrapping)."),
    Register("link_resync_cycles", "rw", "Idle cycles after which the bridge drops a partial frame "
             "(0: never); never less than two bit-times × 16 of the current UART divisor in effect."),
    Register("link_requests", "ro", "Requests answered by the bridge (wrapping)."),
    Register("link_header_errors", "ro", "Request headers dropped for a bad CRC (wrapping)."),
    Register("link_payload_errors", "ro", "WRITE payloads answered CRC_ERROR (wrapping)."),
    Register("link_resyncs", "ro", "Partial frames dropped after the idle timeout (wrapping)."),
)


def soc_memory_map(config: SocConfig) -> MemoryMap:
    """The SoC's map for a configuration. Gateware and host both call this; nothing else assigns addresses."""
    from .uart import divisor_for

    builder = MemoryMapBuilder()
    builder.add_rom("id", ROM_BYTES, "ID/config ROM: magic, format version, map hash, tagged parameters.")
    registers = []
    for reg in SPINE_REGISTERS:
        if reg.name == "uart_divisor":
            reg = dataclasses.replace(reg, init=divisor_for(config.clock_hz, config.baud))
        elif reg.name == "link_resync_cycles":
            reg = dataclasses.replace(reg, init=config.resync_cycles)
        registers.append(reg)
    builder.add_registers("csr", registers, "Control and status registers of the spine.")
    builder.add_memory("scratch", config.scratch_bytes, "Scratch memory for bulk transfers and tests.")
    if config.has_engine:
        from . import contraction_format as cf
        builder.add_registers("engine", cf.engine_registers(), "Contraction engine: control, status, counters.")
        builder.add_memory("engine_desc", config.engine_queue * cf.DESC_SLOT_WORDS * WORD_BYTES,
                           "Contraction engine descriptor queue: one slot of 64 words per entry.")
        builder.add_memory("tensor", config.tensor_bytes,
                           "Tensor memory: the engine's operands and results (also read/written by the host).")
    if config.has_nic:
        from .nic_format import NIC_REGISTERS
        builder.add_registers("nic", [Register(name, access, text, maximum=limit[0] if limit else 0xFFFF_FFFF)
                                      for name, access, text, *limit in NIC_REGISTERS],
                              "All-reduce NIC: configuration, control, status, counters (docs/nic.md).")
        builder.add_memory("nic_vector", config.nic_vector_words * WORD_BYTES,
                           "All-reduce NIC vector memory: the padded input, then the result in place.")
    return builder.build(config)
