"""`Device`: the host's handle on one tensornic device (board, simulator or emulator) over a Transport.

Opening a device sends a NOP, reads the ID/config ROM, rebuilds the register map the installed package
would generate for the reported parameters and refuses the device if the map hashes differ.
"""

import numpy as np

from .errors import DeviceMismatch, ReadOnly, TensornicError
from .link import LinkClient
from .rtl import memory_map as mm
from .rtl.link_format import WORD_BYTES


class Device:
    def __init__(self, transport, *, timeout=0.25, retries=10, check_map=True):
        self.transport = transport
        self.link = LinkClient(transport, timeout=timeout, retries=retries)
        self._closed = False
        try:
            self.link.nop()
            words = np.frombuffer(self.link.read(0, mm.ROM_BYTES), dtype="<u4").tolist()
            self._identify(words, check_map)
        except BaseException:
            self.close()
            raise

    # -- identity -------------------------------------------------------------------------------------
    def _identify(self, words, check_map):
        magic, version, map_hash, count, entries = mm.decode_rom(words)
        where = getattr(self.transport, "port", "the device")
        if magic != mm.MAGIC:
            raise DeviceMismatch(
                f"{where} answers but is not a tensornic device (ID word {magic:#010x}, expected "
                f"{mm.MAGIC:#010x} 'TNIC'). Program a tensornic bitstream or pick the right port.")
        if version != mm.FORMAT_VERSION:
            raise DeviceMismatch(
                f"{where} has ID/config format version {version}, this package speaks version "
                f"{mm.FORMAT_VERSION}. Rebuild the bitstream (make bitstream) or install the matching package.")
        config, unknown = mm.SocConfig.from_rom_entries(entries)
        self.memory_map = mm.soc_memory_map(config)
        if check_map and map_hash != self.memory_map.hash:
            raise DeviceMismatch(
                f"{where} reports register-map hash {map_hash:08x} but this package generates "
                f"{self.memory_map.hash:08x} for the same parameters: the bitstream is stale (or the "
                f"package is). Rebuild and reprogram the bitstream (make bitstream BOARD=…), or install "
                f"the package version it was built from.")
        self.config = config
        self.info = {"magic": magic, "version": version, "map_hash": map_hash,
                     **{name: getattr(config, name) for name in config.TAGS}, **unknown}
        self.regions = {r.name: (r.base, r.size) for r in self.memory_map.regions}
        self.link.max_transfer = config.max_transfer

    # -- raw memory access ----------------------------------------------------------------------------
    def _check_range(self, addr, nbytes, writing=False):
        if nbytes < 0 or addr < 0:
            raise ValueError(f"address {addr:#x} and length {nbytes} must be non-negative")
        region = self.memory_map.find(addr, max(nbytes, 1))
        if region is None:
            spans = ", ".join(f"{r.name} {r.base:#x}–{r.end:#x}" for r in self.memory_map.regions)
            raise ValueError(f"{nbytes} bytes at {addr:#x} do not fit inside one region of the device "
                             f"({spans})")
        if writing and region.read_only:
            raise ReadOnly(f"region {region.name!r} at {region.base:#x} is read-only")
        return region

    def read(self, addr, nbytes) -> bytes:
        """Read `nbytes` bytes at byte address `addr` (any alignment; inside one region)."""
        self._check_range(addr, nbytes)
        if nbytes == 0:
            return b""
        start = addr - addr % WORD_BYTES
        end = -(-(addr + nbytes) // WORD_BYTES) * WORD_BYTES
        data = self.link.read(start, end - start)
        return data[addr - start: addr - start + nbytes]

    def write(self, addr, data):
        """Write bytes or a numpy array at byte address `addr`. Unaligned edges of a memory region are
        merged with a read-modify-write; register regions need word-aligned writes."""
        if isinstance(data, np.ndarray):
            data = np.ascontiguousarray(data).tobytes()
        data = bytes(data)
        region = self._check_range(addr, len(data), writing=True)
        if not data:
            return
        head = addr % WORD_BYTES
        tail = (-(addr + len(data))) % WORD_BYTES
        if head or tail:
            if region.kind != "memory":
                raise ValueError(f"writes to the {region.name!r} registers must be whole aligned words "
                                 f"(address {addr:#x}, {len(data)} bytes)")
            start = addr - head
            if head:
                data = self.link.read(start, WORD_BYTES)[:head] + data
            if tail:
                last = addr + len(data) - head
                data = data + self.link.read(last - (WORD_BYTES - tail), WORD_BYTES)[WORD_BYTES - tail:]
            addr = start
        self.link.write(addr, data)

    def read_array(self, addr, dtype, count) -> np.ndarray:
        dtype = np.dtype(dtype)
        return np.frombuffer(self.read(addr, dtype.itemsize * count), dtype=dtype).copy()

    # -- registers ------------------------------------------------------------------------------------
    def register_address(self, name) -> int:
        """Address of a register named `name` or `region.name`."""
        region_name, _, reg_name = name.rpartition(".")
        banks = [r for r in self.memory_map.regions if r.kind == "registers"]
        if region_name:
            banks = [r for r in banks if r.name == region_name]
        for bank in banks:
            for reg in bank.registers:
                if reg.name == reg_name:
                    return bank.base + reg.offset
        known = ", ".join(f"{b.name}.{r.name}" for b in self.memory_map.regions if b.kind == "registers"
                          for r in b.registers)
        raise KeyError(f"no register {name!r}; the device has: {known}")

    def read_reg(self, name) -> int:
        return int.from_bytes(self.link.read(self.register_address(name), WORD_BYTES), "little")

    def _register(self, name):
        addr = self.register_address(name)
        bank = self.memory_map.find(addr)
        return addr, bank.register(name.rpartition(".")[2])

    def write_reg(self, name, value):
        """Write a read/write register. Values outside the register's declared range are refused here
        (and ignored by the device), so no single write can put the device out of reach."""
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"register {name!r} takes an integer, not {type(value).__name__}")
        value = int(value)
        addr, reg = self._register(name)
        if reg.access != "rw":
            raise ReadOnly(f"register {name!r} is read-only")
        if not reg.accepts(value):
            raise ValueError(f"register {name!r} accepts {reg.minimum}…{reg.maximum}, not {value}"
                             + (" (use Device.set_baud for the line rate)" if name.endswith("uart_divisor")
                                else ""))
        self.link.write(addr, value.to_bytes(WORD_BYTES, "little"))

    def registers(self) -> dict:
        """Every register's current value, by name."""
        out = {}
        for bank in self.memory_map.regions:
            if bank.kind == "registers":
                raw = self.link.read(bank.base, bank.size)
                for reg in bank.registers:
                    out[reg.name] = int.from_bytes(raw[reg.offset: reg.offset + WORD_BYTES], "little")
        return out

    def cycles(self) -> int:
        """The device's 64-bit cycle counter (low word read first; it latches the high word)."""
        lo = self.read_reg("cycles_lo")
        hi = self.read_reg("cycles_hi")
        return hi << 32 | lo

    def set_baud(self, baud):
        """Switch the link's line rate: the device changes once it has answered, then the host follows.

        If the answer is lost, the device may have switched anyway: the host then tries the new rate, and
        goes back to the old one only if the device does not answer there either."""
        from .rtl.uart import divisor_for
        divisor = divisor_for(self.config.clock_hz, baud)     # ValueError for a rate the clock can't make
        old = getattr(self.transport, "baud", None)
        try:
            self.write_reg("uart_divisor", divisor)
        except TensornicError as first:
            self.transport.set_baud(baud)
            try:
                self.link.nop()
                return
            except TensornicError:
                if old is not None:
                    self.transport.set_baud(old)
                raise first
        self.transport.set_baud(baud)
        self.link.nop()

    # -- lifetime -------------------------------------------------------------------------------------
    def close(self):
        if not self._closed:
            self._closed = True
            self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        where = getattr(self.transport, "port", type(self.transport).__name__)
        return f"<tensornic.Device at {where} map {self.info.get('map_hash', 0):08x}>"

    # -- tensor contractions (TAPP-style API, host/tapp.py) -------------------------------------------------
    # Thin delegations; the device needs the contraction engine (tapp.NoExecutor otherwise).
    def tensor_product(self, A_info, idx_A, B_info, idx_B, C_info, idx_C, D_info, idx_D, **options):
        """A TAPP plan for D = α·A·B + β·C on this device (tensornic.tapp.tensor_product)."""
        from .tapp import tensor_product
        return tensor_product(self, A_info, idx_A, B_info, idx_B, C_info, idx_C, D_info, idx_D, **options)

    def einsum(self, subscripts, A, B, C=None, alpha=1, beta=0, **options):
        """numpy-style einsum of two int8 tensors on the engine (tensornic.tapp.einsum)."""
        from .tapp import einsum
        return einsum(self, subscripts, A, B, C, alpha, beta, **options)

    def upload(self, array):
        """Copy an int8/int32 array into tensor memory; returns a DeviceTensor (tensornic.tapp.upload)."""
        from .tapp import upload
        return upload(self, array)

    # -- the all-reduce NIC (host/nic.py) ---------------------------------------------------------------
    def allreduce(self, x, rs_codec="fp32", ag_codec="fp32", **options):
        """This rank's part of a ring all-reduce on the NIC (tensornic.nic.allreduce; a collective: every
        rank calls it). Run `tensornic.nic.configure(dev, rank=, world=)` once first."""
        from .nic import allreduce
        return allreduce(self, x, rs_codec, ag_codec, **options)
