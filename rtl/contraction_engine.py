"""The tensor-contraction engine: descriptor queue, validator, tiling sequencer, operand loader, systolic
array feeder, drain and write-back. docs/contraction-engine.md describes the descriptor and registers.

Dataflow (each stage runs concurrently, decoupled by FIFOs and double buffers):

1. **Queue and validator.** The host writes descriptors into `desc` memory slots and pokes `submit`. The
   validator reads the oldest one, multiplies (extent − 1)·stride per loop and operand (shift-add), checks
   every address bound, alignment and stride (EngineStatus codes) and computes the address generator's
   jumps. A rejected descriptor halts the engine before any memory access; `control` bit 0 clears it.
2. **Tile producer.** D is cut into tiles of up to `tile_m`×`tile_n` elements of the flattened M and N
   indices and K into chunks of up to `chunk_k`. Per tile the address generator fills offset tables (M, N:
   double-buffered by tile; K: once per descriptor when K ≤ chunk_k). The loader then fills an A panel
   (tile_m × chunk_k) and a B panel (chunk_k × tile_n) in double-buffered banked scratchpads through the
   64-bit `ld` port, in runs of up to 8 bytes whenever the panel's inner index is contiguous in memory
   (along K, or along M/N — whichever the layout offers), one element per request otherwise.
   An A panel is reused for all tiles of a tile row when K fits one chunk.
3. **Feeder + array.** Each job (tile, chunk) is computed as R×C sub-tiles; each sub-tile streams its
   chunk's k-steps into the output-stationary array (intervals padded to ≥ R steps). Partial tiles and
   chunks (shapes not multiples of R, C, tile or chunk sizes) are handled by masks; no host padding.
4. **Drain and write-back.** Shadow values leave the array column by column; the difference from each
   cell's previous shadow is the sub-tile's sum (see rtl/systolic.py). The write-back adds C (first
   chunk, if `accumulate`) or the partial D (later chunks) read through the `wb` port and writes D.

Memory ports (valid/ready streams, in-order responses, any latency): `ld_req` (64-bit word address) →
`ld_resp` (64-bit data); `wb_req` (32-bit word address, write flag, data) → `wb_resp` (read data).
"""

from amaranth import Module, Signal, Mux, Cat, Const, Value, signed, unsigned
from amaranth.hdl import ResetInserter
from amaranth.lib import wiring, stream, data, memory, fifo
from amaranth.lib.wiring import In, Out

from . import contraction_format as cf
from .address_gen import AddressGenerator
from .bus import BusSignature
from .ecp5_ram import RegisteredMemory, use_ecp5_ram
from .memory_map import MemoryMapBuilder
from .systolic import SystolicArray

__all__ = ["ContractionEngine", "EngineCore", "engine_register_region", "WbRequest"]

SCRATCH_WORD_BYTES = 8      # scratchpad word and ld port word
LD_OUTSTANDING = 8
WB_OUTSTANDING = 4
ABORT_CYCLES = 16


def engine_register_region():
    builder = MemoryMapBuilder()
    return builder.add_registers("engine", cf.engine_registers(), "Contraction engine registers.")


def WbRequest(addr_bits):
    return data.StructLayout({"addr": unsigned(addr_bits), "write": unsigned(1), "data": unsigned(32)})


def _place(high, scale, low):
    """high·scale + low for 0 ≤ low < scale: a plain concatenation (no adder) when scale is a power of two."""
    if scale & (scale - 1) == 0:
        bits = scale.bit_length() - 1
        low = Value.cast(low).as_unsigned()
        if len(low) < bits:
            low = Cat(low, Const(0, bits - len(low)))
        return Cat(low[:bits], high)
    return high * scale + low


def _table_addr(parity, index, size):
    """Entry `index` (< size) of the half `parity` of a double-buffered table of 2·size entries."""
    return _place(parity, size, index)


def array_acc_bits(width, interval):
    """Accumulator width of the array's cells: enough for any sub-tile sum to be exact.

    An interval (one sub-tile's k-steps, padded) lasts at most `interval` steps of products of magnitude at
    most 2^(2·width − 2), so its sum S has |S| ≤ interval·2^(2·width − 2). The drain recovers S modulo
    2^acc as a difference of shadows; when that bound fits a signed acc-bit number, sign-extending the
    difference gives S exactly, and the 32-bit result is unchanged. Never more than 32 bits (the results
    wrap modulo 2^32 anyway)."""
    return min(32, (interval << (2 * width - 2)).bit_length() + 1)


def _pow2_at_least(value):
    return 1 << max(0, value - 1).bit_length()


def _log2(value, what):
    if value < 1 or value & (value - 1):
        raise ValueError(f"{what}={value} must be a power of two")
    return value.bit_length() - 1


class EngineCore(wiring.Component):
    """Everything but the register bank and descriptor memory (those live in ContractionEngine).

    `mult` and `ram` ("auto", "portable" or "ecp5") choose the ECP5 primitives — MULT18X18D in the array
    (rtl/systolic.py), DP16KD with output registers for every block RAM (rtl/ecp5_ram.py) — or their
    portable descriptions; "auto" follows `platform.family`. Both give identical cycle behaviour."""

    def __init__(self, *, rows=8, cols=8, width=8, loops=8, tile_m=64, tile_n=64, chunk_k=256, queue=4,
                 tensor_bytes=256 * 1024, mult="auto", ram="auto"):
        if width not in (8, 16):
            raise ValueError(f"width must be 8 or 16, not {width}")
        if not 6 <= loops <= (cf.DESC_SLOT_WORDS - cf.DESC_LOOPS) // cf.LOOP_WORDS:
            raise ValueError(f"loops={loops} must be in 6…{(cf.DESC_SLOT_WORDS - cf.DESC_LOOPS) // cf.LOOP_WORDS}")
        if tile_m % rows or tile_n % cols or tile_m < rows or tile_n < cols:
            raise ValueError(f"tile {tile_m}×{tile_n} must be a positive multiple of the {rows}×{cols} array")
        self.eb = width // 8
        self.lanes = SCRATCH_WORD_BYTES // self.eb
        if chunk_k % self.lanes or chunk_k < self.lanes:
            raise ValueError(f"chunk_k={chunk_k} must be a positive multiple of {self.lanes}")
        _log2(queue, "queue")
        self.addr_bits = _log2(tensor_bytes, "tensor_bytes")
        if not 12 <= self.addr_bits <= 30:
            raise ValueError(f"tensor_bytes={tensor_bytes} must be 4 KiB…1 GiB")
        self.rows, self.cols, self.width, self.loops = rows, cols, width, loops
        self.tile_m, self.tile_n, self.chunk_k, self.queue = tile_m, tile_n, chunk_k, queue
        use_ecp5_ram(ram, None)
        self.tensor_bytes, self.mult, self.ram = tensor_bytes, mult, ram
        self.offset_bits = self.addr_bits + 2
        self.rem_bits = max(tile_m, tile_n, chunk_k).bit_length()
        self.acc_bits = array_acc_bits(width, max(chunk_k, rows))
        super().__init__({
            "desc_addr": Out(range(queue * cf.DESC_SLOT_WORDS)),
            "desc_data": In(32),             # the word at desc_addr two cycles earlier (a register)
            "queue_count": In(range(queue + 1)),
            "take": Out(1),                  # the validator consumed the oldest queue slot
            "head": In(range(queue)),
            "seq": In(32),                   # sequence number of the oldest queued descriptor
            "ld_req": Out(stream.Signature(unsigned(self.addr_bits - 3))),
            "ld_resp": In(stream.Signature(unsigned(64))),
            "wb_req": Out(stream.Signature(WbRequest(self.addr_bits - 2))),
            "wb_resp": In(stream.Signature(unsigned(32))),
            "busy": Out(1),
            "error": Out(1),
            "error_code": Out(4),
            "error_index": Out(32),
            "completed": Out(1),             # strobe: a descriptor finished
            "mac_add": Out(range(rows * cols + 1)),   # useful MACs issued this cycle
            "array_step": Out(1),
            "stall_operand": Out(1),
            "stall_drain": Out(1),
            "stall_bus": Out(1),
        })

    # ---------------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        self._backend_busy = Signal(name="backend_busy")
        R, C, L, P, eb = self.rows, self.cols, self.loops, self.lanes, self.eb
        AW, OB, RB = self.addr_bits, self.offset_bits, self.rem_bits
        tm, tn = self.tile_m // R, self.tile_n // C
        KW = self.chunk_k // P                       # scratch words per panel row
        Tm, Tn, Kc = self.tile_m, self.tile_n, self.chunk_k

        # ===== prepared descriptor (written by the validator, read by the tile producer) =====
        extent = Signal(data.ArrayLayout(unsigned(cf.EXTENT_BITS), L))
        role = Signal(data.ArrayLayout(unsigned(2), L))
        base = Signal(data.ArrayLayout(unsigned(32), 4))        # a, b, c, d (bytes)
        accumulate = Signal()
        fence = Signal()

        m.submodules.walker = walker = AddressGenerator(loops=L, slots=cf.SLOTS, offset_bits=OB, rem_bits=RB)

        # ===== validator =====
        # Serial: one operand of one loop at a time through one shift-add multiplier; the operands' lowest
        # and highest offsets (lo, hi) and the per-role running sums of (extent − 1)·stride (for the jumps)
        # live in a small distributed RAM and are updated read-modify-write, then checked one by one.
        PW = cf.EXTENT_BITS + AW + 3                             # |(extent−1)·stride| < 2^(16+AW)
        SW = PW + 4
        v_go = Signal()                                          # prepared descriptor ready for producer
        producer_idle = Signal()
        err = Signal()
        err_code = Signal(4)
        err_index = Signal(32)
        m.d.comb += [self.error.eq(err), self.error_code.eq(err_code), self.error_index.eq(err_index)]

        # The 5 words of a group shift in at word[4]; while a loop is processed, word[1…4] rotate so that
        # word[1] is always the stride of the operand at hand.
        word = Signal(data.ArrayLayout(unsigned(32), cf.LOOP_WORDS))
        fetch_idx = Signal(range(cf.LOOP_WORDS + 2))
        loop_i = Signal(range(L))
        slot_base = Signal(range(self.queue * cf.DESC_SLOT_WORDS))
        group_base = Signal(range(cf.DESC_SLOT_WORDS))           # first word of the group being read
        m.d.comb += self.desc_addr.eq(slot_base + group_base + fetch_idx)
        em1 = Signal(cf.EXTENT_BITS)
        em1_zero = Signal()                                      # em1 == 0, as a register
        shifted = Signal(signed(PW))
        product = Signal(signed(PW))
        x_op = Signal(2)                                         # operand at hand: a, b, c, d
        errors = Signal(len(cf.EngineStatus))
        cur_ext = Signal(cf.EXTENT_BITS)
        cur_role = Signal(2)
        m.d.comb += [cur_ext.eq(word[0][:cf.EXTENT_BITS]), cur_role.eq(word[0][cf.ROLE_SHIFT:cf.ROLE_SHIFT + 2])]
        stride = word[1].as_signed()
        shift_in = Signal()
        rotate = Signal()
        m.d.sync += [word[k].eq(word[k + 1]) for k in range(1, cf.LOOP_WORDS - 1)]
        desc_q = self.desc_data             # (the word at desc_addr two cycles earlier, a register)
        with m.If(shift_in):
            m.d.sync += [word[0].eq(word[1]), word[cf.LOOP_WORDS - 1].eq(desc_q)]
        with m.Elif(rotate):
            m.d.sync += word[cf.LOOP_WORDS - 1].eq(word[1])
        with m.Else():
            m.d.sync += [word[k].eq(word[k]) for k in range(1, cf.LOOP_WORDS)]

        # Sums memory: lo[x] at x, hi[x] at 4 + x, running sum of role r, slot s at 8 + 3r + s. Entries not
        # written since the descriptor started read as 0.
        SUM_LO, SUM_HI, SUM_ROLE = 0, 4, 8
        m.submodules.v_sums = v_sums = memory.Memory(shape=signed(SW), depth=32, init=[])
        sums_w = v_sums.write_port()
        sums_r = v_sums.read_port(domain="comb")
        sum_addr = Signal(5)
        sum_valid = Signal(SUM_ROLE + 3 * cf.SLOTS)
        rd = Signal(signed(SW))
        m.d.comb += [sums_r.addr.eq(sum_addr), sums_w.addr.eq(sum_addr)]
        jump_reg = Signal(data.ArrayLayout(signed(OB), cf.SLOTS))

        # Static facts about (operand, role): does the operand use the role, and in which jump slot.
        # They are registers, a cycle behind x_op and word[0]: both are set at least two cycles before the
        # MUL, LOHI_WRITE and ROLE_WRITE states that use them (in LOOP or ROLE_WRITE, then MUL_INIT).
        uses_role = Signal()
        has_slot_c = Signal()
        slot_of_c = Signal(range(cf.SLOTS))
        with m.Switch(Cat(cur_role, x_op)):
            for xi, op in enumerate(cf.OPERANDS):
                for r in range(4):
                    with m.Case(r | xi << 2):
                        m.d.comb += uses_role.eq(r in cf.OPERAND_ROLES[op])
                        if r in cf.ROLE_SLOTS and op in cf.ROLE_SLOTS[r]:
                            m.d.comb += [has_slot_c.eq(1), slot_of_c.eq(cf.ROLE_SLOTS[r].index(op))]
        uses, has_slot = Signal(), Signal()
        slot_of = Signal(range(cf.SLOTS))
        m.d.sync += [uses.eq(uses_role & (cur_ext > 1) & ((x_op != 2) | accumulate)), has_slot.eq(has_slot_c),
                     slot_of.eq(slot_of_c)]
        role_base = Signal(4)                                    # cur_role · SLOTS (no multiplier)
        with m.Switch(cur_role):
            for r in range(4):
                with m.Case(r):
                    m.d.comb += role_base.eq(r * cf.SLOTS)

        ebs_of = [eb, eb, cf.ACC_BYTES, cf.ACC_BYTES]
        chk_hi = Signal()
        chk_base = Signal(32)
        with m.Switch(x_op):
            for xi in range(4):
                with m.Case(xi):
                    m.d.comb += chk_base.eq(base[xi])
        # Checked in three cycles (read, add, compare): base + (offset << shift) is registered, and the
        # high end's "+ size > memory" becomes "> memory − size", a compare with a constant.
        chk_shift = Mux(x_op[1], 2, eb.bit_length() - 1)
        chk_value = Signal(signed(SW + 4))
        chk_base_q = Signal(32)
        misaligned = Mux(x_op[1], chk_base_q[:2] != 0, chk_base_q[0] if eb == 2 else 0)
        chk_bad, chk_mis = Signal(name="chk_bad"), Signal(name="chk_mis")   # a check failed (one cycle)
        chk_op = Signal(2)                                       # ... for this operand
        m.d.sync += [chk_bad.eq(0), chk_mis.eq(0)]               # (set by CHECK only)
        with m.If(chk_mis):
            m.d.sync += errors[cf.EngineStatus.MISALIGNED].eq(1)
        with m.If(chk_bad):
            with m.Switch(chk_op):
                for xi, op in enumerate(cf.OPERANDS):
                    with m.Case(xi):
                        m.d.sync += errors[cf.EngineStatus[f"{op.upper()}_RANGE"]].eq(1)
        backend_busy_q = Signal()
        m.d.sync += backend_busy_q.eq(self._backend_busy)

        with m.FSM(name="validator") as validator_fsm:
            with m.State("IDLE"):
                with m.If(~err & producer_idle & ~v_go & (self.queue_count != 0)):
                    m.d.sync += [slot_base.eq(self.head * cf.DESC_SLOT_WORDS), fetch_idx.eq(0),
                                 errors.eq(0), loop_i.eq(L - 1), group_base.eq(0), sum_valid.eq(0)]
                    m.next = "FETCH_HEADER"
            for name, after in (("FETCH_HEADER", "HEADER"), ("FETCH_LOOP", "LOOP")):
                with m.State(name):
                    m.d.sync += fetch_idx.eq(fetch_idx + 1)
                    # Word i is read at fetch_idx = i and reaches desc_q two cycles later.
                    m.d.comb += shift_in.eq(fetch_idx >= 2)
                    with m.If(fetch_idx == cf.LOOP_WORDS + 1):
                        m.d.sync += fetch_idx.eq(0)
                        m.next = after
            with m.State("HEADER"):
                m.d.sync += [accumulate.eq(word[cf.DESC_FLAGS][0]), fence.eq(word[cf.DESC_FLAGS][1]),
                             base[0].eq(word[cf.DESC_BASE_A]), base[1].eq(word[cf.DESC_BASE_B]),
                             base[2].eq(word[cf.DESC_BASE_C]), base[3].eq(word[cf.DESC_BASE_D]),
                             group_base.eq(cf.DESC_LOOPS + (L - 1) * cf.LOOP_WORDS)]   # innermost loop first
                m.next = "FETCH_LOOP"
            with m.State("LOOP"):
                with m.If(cur_ext == 0):
                    m.d.sync += errors[cf.EngineStatus.ZERO_EXTENT].eq(1)
                with m.If((cur_ext > 1) & (cur_role == 3)):
                    m.d.sync += errors[cf.EngineStatus.BAD_ROLE].eq(1)
                with m.Switch(loop_i):
                    for li in range(L):
                        with m.Case(li):
                            m.d.sync += [extent[li].eq(cur_ext), role[li].eq(cur_role)]
                m.d.sync += [x_op.eq(0), jump_reg.eq(0)]
                m.next = "MUL_INIT"
            with m.State("MUL_INIT"):
                m.d.sync += [em1.eq(Mux(cur_ext == 0, 0, cur_ext - 1)), em1_zero.eq(cur_ext <= 1),
                             shifted.eq(stride), product.eq(0)]
                m.next = "MUL"
            with m.State("MUL"):
                m.d.sync += [em1.eq(em1 >> 1), em1_zero.eq(em1[1:] == 0), shifted.eq(shifted << 1)]
                with m.If(em1[0]):
                    m.d.sync += product.eq(product + shifted)
                with m.If(em1_zero):
                    m.d.sync += sum_addr.eq(Mux(product < 0, SUM_LO, SUM_HI) + x_op)
                    m.next = "LOHI_READ"
            with m.State("LOHI_READ"):
                # (the stride's range is checked here, once per operand, away from the multiplier's loop)
                with m.If(uses & ((stride <= -(1 << AW)) | (stride >= (1 << AW)))):
                    m.d.sync += errors[cf.EngineStatus.STRIDE_RANGE].eq(1)
                m.d.sync += rd.eq(Mux(sum_valid.bit_select(sum_addr, 1), sums_r.data, 0))
                m.next = "LOHI_WRITE"
            with m.State("LOHI_WRITE"):
                with m.If(uses):
                    m.d.comb += [sums_w.data.eq(rd + product), sums_w.en.eq(1)]
                    m.d.sync += sum_valid.bit_select(sum_addr, 1).eq(1)
                m.d.sync += sum_addr.eq(SUM_ROLE + role_base + slot_of)
                m.next = "ROLE_READ"
            with m.State("ROLE_READ"):
                m.d.sync += rd.eq(Mux(sum_valid.bit_select(sum_addr, 1), sums_r.data, 0))
                m.next = "ROLE_WRITE"
            with m.State("ROLE_WRITE"):
                with m.If(has_slot):
                    m.d.comb += [sums_w.data.eq(rd + product), sums_w.en.eq(1)]
                    m.d.sync += sum_valid.bit_select(sum_addr, 1).eq(1)
                    with m.Switch(slot_of):
                        for sl in range(cf.SLOTS):
                            with m.Case(sl):
                                m.d.sync += jump_reg[sl].eq(stride - rd)
                m.d.comb += rotate.eq(1)
                m.d.sync += x_op.eq(x_op + 1)
                with m.If(x_op == 3):
                    m.next = "LOOP_END"
                with m.Else():
                    m.next = "MUL_INIT"
            with m.State("LOOP_END"):
                m.d.comb += [walker.jump_we.eq(1), walker.jump_addr.eq(loop_i), walker.jump_data.eq(jump_reg)]
                with m.If(loop_i == 0):
                    m.d.sync += [x_op.eq(0), chk_hi.eq(0), sum_addr.eq(SUM_LO)]
                    m.next = "CHECK_READ"
                with m.Else():
                    m.d.sync += [loop_i.eq(loop_i - 1), group_base.eq(group_base - cf.LOOP_WORDS)]
                    m.next = "FETCH_LOOP"
            with m.State("CHECK_READ"):
                # Per operand: lowest byte ≥ 0 and alignment (chk_hi = 0), then highest byte + size ≤ memory.
                m.d.sync += [rd.eq(Mux(sum_valid.bit_select(sum_addr, 1), sums_r.data, 0)),
                             chk_base_q.eq(chk_base)]
                m.next = "CHECK_ADD"
            with m.State("CHECK_ADD"):
                m.d.sync += chk_value.eq(chk_base_q + (rd << chk_shift))
                m.next = "CHECK"
            with m.State("CHECK"):
                # The outcome is registered (chk_bad, chk_mis) and sets its error bit a cycle later.
                in_use = (x_op != 2) | accumulate
                # (two compares with constants, x_op only picks: no operand-dependent carry chain)
                too_high = Mux(x_op[1], chk_value > self.tensor_bytes - cf.ACC_BYTES,
                               chk_value > self.tensor_bytes - eb)
                bad = Mux(chk_hi, too_high, chk_value < 0)
                m.d.sync += [chk_bad.eq(in_use & bad), chk_mis.eq(in_use & ~chk_hi & misaligned), chk_op.eq(x_op)]
                m.d.sync += chk_hi.eq(~chk_hi)
                with m.If(chk_hi):
                    m.d.sync += [x_op.eq(x_op + 1), sum_addr.eq(SUM_LO + x_op + 1)]
                    with m.If(x_op == 3):
                        m.next = "CHECK_LAST"
                    with m.Else():
                        m.next = "CHECK_READ"
                with m.Else():
                    m.d.sync += sum_addr.eq(SUM_HI + x_op)
                    m.next = "CHECK_READ"
            with m.State("CHECK_LAST"):
                m.next = "DECIDE"                # (the last check's outcome reaches `errors`)
            with m.State("DECIDE"):
                m.d.comb += self.take.eq(1)
                code = Signal(4)
                for c in reversed(range(1, len(cf.EngineStatus))):
                    with m.If(errors[c]):
                        m.d.comb += code.eq(c)
                with m.If(errors.any()):
                    m.d.sync += [err.eq(1), err_code.eq(code), err_index.eq(self.seq)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "FENCE"
            with m.State("FENCE"):
                # (a register: the producer is idle here, so once the back end is idle it stays idle)
                with m.If(~fence | ~backend_busy_q):
                    m.d.sync += v_go.eq(1)
                    m.next = "IDLE"

        # ===== address generator and offset tables =====
        m.d.comb += [walker.extent.eq(extent), walker.role.eq(role)]
        # The bases are folded into the offsets (in elements): A's and B's into role K's, C's and D's into
        # role N's, so the loader and the write-back add two table entries and no base.
        ebs = eb.bit_length() - 1
        m.d.comb += [walker.origin[cf.ROLE_K][cf.ROLE_SLOTS[cf.ROLE_K].index("a")].eq(base[0][ebs:AW]),
                     walker.origin[cf.ROLE_K][cf.ROLE_SLOTS[cf.ROLE_K].index("b")].eq(base[1][ebs:AW]),
                     walker.origin[cf.ROLE_N][cf.ROLE_SLOTS[cf.ROLE_N].index("c")].eq(base[2][2:AW]),
                     walker.origin[cf.ROLE_N][cf.ROLE_SLOTS[cf.ROLE_N].index("d")].eq(base[3][2:AW])]
        entry = data.StructLayout({"off0": signed(OB), "rem0": unsigned(RB), "off1": signed(OB),
                                   "rem1": unsigned(RB), "off2": signed(OB)})
        # Table reads are registered (RegisteredMemory: the entry two cycles after its address, the block
        # RAM's own output register on ECP5); read port 0 is the loader's, port 1 the write-back's.
        m.submodules.m_table = m_table = RegisteredMemory(shape=entry, depth=2 * Tm, read_ports=2, ram=self.ram)
        m.submodules.n_table = n_table = RegisteredMemory(shape=entry, depth=2 * Tn, read_ports=2, ram=self.ram)
        m.submodules.k_table = k_table = RegisteredMemory(shape=entry, depth=Kc, ram=self.ram)
        tables = (m_table, n_table, k_table)
        fill_entry = Signal(entry)
        m.d.comb += [fill_entry.off0.eq(walker.offset[0]), fill_entry.rem0.eq(walker.rem[0]),
                     fill_entry.off1.eq(walker.offset[1]), fill_entry.rem1.eq(walker.rem[1]),
                     fill_entry.off2.eq(walker.offset[2])]
        for t in tables:
            m.d.comb += t.w_data.eq(fill_entry)

        # ===== scratchpads =====
        # Reads are registered (two cycles from address to data, see RegisteredMemory).
        a_banks = [RegisteredMemory(shape=64, depth=2 * tm * KW, granularity=8 * eb, ram=self.ram)
                   for _ in range(R)]
        b_banks = [RegisteredMemory(shape=64, depth=2 * tn * KW, granularity=8 * eb, ram=self.ram)
                   for _ in range(C)]
        for i, mem in enumerate(a_banks):
            m.submodules[f"a_bank{i}"] = mem
        for j, mem in enumerate(b_banks):
            m.submodules[f"b_bank{j}"] = mem

        # ===== job FIFOs (producer → feeder, producer → write-back) =====
        job = data.StructLayout({
            "a_buf": 1, "b_buf": 1, "release_a": 1, "m_par": 1, "t_par": 1,
            "tm_eff": range(Tm + 1), "tn_eff": range(Tn + 1), "kc_eff": range(Kc + 1),
            "mi_count": range(tm + 1), "nj_count": range(tn + 1),      # sub-tile rows and columns
            "first_chunk": 1, "release_m": 1, "release_n": 1, "desc_last": 1,
            "accumulate": 1,
        })
        m.submodules.feed_jobs = feed_jobs = fifo.SyncFIFOBuffered(width=job.size, depth=2)
        m.submodules.wb_jobs = wb_jobs = fifo.SyncFIFOBuffered(width=job.size, depth=4)
        new_job = Signal(job)
        push_job = Signal()
        m.d.comb += [feed_jobs.w_data.eq(new_job), wb_jobs.w_data.eq(new_job),
                     feed_jobs.w_en.eq(push_job), wb_jobs.w_en.eq(push_job)]

        # Buffer/table ownership: set by the producer, cleared by the feeder (panels) / write-back (tables).
        a_busy, b_busy, m_busy, n_busy = Signal(2), Signal(2), Signal(2), Signal(2)
        a_set, b_set, m_set, n_set = Signal(2), Signal(2), Signal(2), Signal(2)
        a_clr, b_clr, m_clr, n_clr = Signal(2), Signal(2), Signal(2), Signal(2)
        for busy, s, c in ((a_busy, a_set, a_clr), (b_busy, b_set, b_clr), (m_busy, m_set, m_clr),
                           (n_busy, n_set, n_clr)):
            m.d.sync += busy.eq((busy | s) & ~c)

        # ===== tile producer =====
        a_buf, b_buf, m_par, t_par = Signal(), Signal(), Signal(), Signal()
        new_m = Signal()
        first_job = Signal()
        single_chunk = Signal()
        kc_idx_zero = Signal()                                    # the next job is chunk 0 of its tile
        tm_eff, tn_eff, kc_eff = Signal(range(Tm + 1)), Signal(range(Tn + 1)), Signal(range(Kc + 1))
        m_last, n_last, k_last = Signal(), Signal(), Signal()
        fill_count = Signal(range(max(Tm, Tn, Kc) + 1))
        blk_pos = Signal(range(max(R, C)))                       # position within an R (or C) block
        mi_count, nj_count = Signal(range(tm + 1)), Signal(range(tn + 1))
        need_a = Signal()
        load_go = Signal()                                        # start the loader
        load_done = Signal()                                      # loader finished (one cycle)
        load_op = Signal()                                        # 0: A, 1: B

        with m.FSM(name="producer"):
            with m.State("IDLE"):
                m.d.comb += producer_idle.eq(1)
                with m.If(v_go):
                    m.d.sync += [v_go.eq(0), new_m.eq(1), first_job.eq(1), single_chunk.eq(0),
                                 kc_idx_zero.eq(1), walker.sel.eq(cf.ROLE_M)]
                    m.next = "RESTART"
            with m.State("RESTART"):
                # Return the three roles to index 0.
                m.d.comb += walker.restart.eq(1)
                m.next = "JOB"
            with m.State("JOB"):
                with m.If(kc_idx_zero & new_m):
                    with m.If(~m_busy.bit_select(~m_par, 1)):
                        m.d.sync += [walker.sel.eq(cf.ROLE_M), m_par.eq(~m_par), fill_count.eq(0),
                                     blk_pos.eq(0), mi_count.eq(0)]
                        m.d.comb += m_set.eq(Mux(m_par, 0b01, 0b10))
                        m.next = "FILL_M"
                with m.Elif(kc_idx_zero):
                    m.next = "N"
                with m.Else():
                    m.next = "K"
            with m.State("FILL_M"):
                # One entry every other cycle (the address generator's step takes two).
                m.d.comb += [m_table.w_addr.eq(_table_addr(m_par, fill_count, Tm)),
                             m_table.w_en.eq(walker.valid), walker.step.eq(1)]
                with m.If(walker.valid):
                    m.d.sync += [fill_count.eq(fill_count + 1),
                                 blk_pos.eq(Mux(blk_pos == R - 1, 0, blk_pos + 1))]
                    with m.If(blk_pos == 0):
                        m.d.sync += mi_count.eq(mi_count + 1)
                    with m.If(walker.last | (fill_count == Tm - 1)):
                        m.d.sync += [tm_eff.eq(fill_count + 1), m_last.eq(walker.last)]
                        m.next = "N"
            with m.State("N"):
                with m.If(~n_busy.bit_select(~t_par, 1)):
                    m.d.sync += [walker.sel.eq(cf.ROLE_N), t_par.eq(~t_par), fill_count.eq(0), blk_pos.eq(0),
                                 nj_count.eq(0)]
                    m.d.comb += n_set.eq(Mux(t_par, 0b01, 0b10))
                    m.next = "FILL_N"
            with m.State("FILL_N"):
                m.d.comb += [n_table.w_addr.eq(_table_addr(t_par, fill_count, Tn)),
                             n_table.w_en.eq(walker.valid), walker.step.eq(1)]
                with m.If(walker.valid):
                    m.d.sync += [fill_count.eq(fill_count + 1),
                                 blk_pos.eq(Mux(blk_pos == C - 1, 0, blk_pos + 1))]
                    with m.If(blk_pos == 0):
                        m.d.sync += nj_count.eq(nj_count + 1)
                    with m.If(walker.last | (fill_count == Tn - 1)):
                        m.d.sync += [tn_eff.eq(fill_count + 1), n_last.eq(walker.last)]
                        m.next = "K"
            with m.State("K"):
                with m.If(first_job | ~single_chunk):
                    m.d.sync += [walker.sel.eq(cf.ROLE_K), fill_count.eq(0)]
                    m.next = "FILL_K"
                with m.Else():
                    m.next = "PANELS"
            with m.State("FILL_K"):
                m.d.comb += [k_table.w_addr.eq(fill_count), k_table.w_en.eq(walker.valid),
                             walker.step.eq(1)]
                with m.If(walker.valid):
                    m.d.sync += fill_count.eq(fill_count + 1)
                    with m.If(walker.last | (fill_count == Kc - 1)):
                        m.d.sync += [kc_eff.eq(fill_count + 1), k_last.eq(walker.last)]
                        with m.If(first_job):
                            m.d.sync += single_chunk.eq(walker.last)
                        m.next = "PANELS"
            with m.State("PANELS"):
                m.d.sync += need_a.eq((kc_idx_zero & new_m) | ~single_chunk)
                m.next = "LOAD_A"
            with m.State("LOAD_A"):
                with m.If(~need_a):
                    m.next = "LOAD_B"
                with m.Elif(~a_busy.bit_select(~a_buf, 1)):
                    m.d.sync += [a_buf.eq(~a_buf), load_op.eq(0)]
                    m.d.comb += a_set.eq(Mux(a_buf, 0b01, 0b10))
                    m.d.comb += load_go.eq(1)
                    m.next = "WAIT_A"
            with m.State("WAIT_A"):
                with m.If(load_done):
                    m.next = "LOAD_B"
            with m.State("LOAD_B"):
                with m.If(~b_busy.bit_select(~b_buf, 1)):
                    m.d.sync += [b_buf.eq(~b_buf), load_op.eq(1)]
                    m.d.comb += b_set.eq(Mux(b_buf, 0b01, 0b10))
                    m.d.comb += load_go.eq(1)
                    m.next = "WAIT_B"
            with m.State("WAIT_B"):
                with m.If(load_done):
                    m.next = "PUSH"
            with m.State("PUSH"):
                m.d.comb += [
                    new_job.a_buf.eq(a_buf), new_job.b_buf.eq(b_buf),
                    new_job.release_a.eq(~single_chunk | (n_last & k_last)),
                    new_job.m_par.eq(m_par), new_job.t_par.eq(t_par),
                    new_job.tm_eff.eq(tm_eff), new_job.tn_eff.eq(tn_eff), new_job.kc_eff.eq(kc_eff),
                    new_job.mi_count.eq(mi_count), new_job.nj_count.eq(nj_count),
                    new_job.first_chunk.eq(kc_idx_zero), new_job.release_n.eq(k_last),
                    new_job.release_m.eq(k_last & n_last), new_job.desc_last.eq(k_last & n_last & m_last),
                    new_job.accumulate.eq(accumulate),
                ]
                with m.If(feed_jobs.w_rdy & wb_jobs.w_rdy):
                    m.d.comb += push_job.eq(1)
                    m.d.sync += [first_job.eq(0), kc_idx_zero.eq(k_last)]
                    with m.If(k_last):
                        m.d.sync += new_m.eq(n_last)
                        with m.If(n_last & m_last):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "JOB"
                    with m.Else():
                        m.d.sync += new_m.eq(0)
                        m.next = "JOB"

        # ===== loader =====
        load_go_q = Signal()                  # (registered: the loader starts a cycle after the producer asks)
        m.d.sync += load_go_q.eq(load_go)
        self._elaborate_loader(m, load_go_q, load_done, load_op, a_buf, b_buf, m_par, t_par, tm_eff, tn_eff,
                               kc_eff, base, m_table, n_table, k_table, a_banks, b_banks)

        # ===== feeder, array, drain, write-back =====
        self._elaborate_backend(m, feed_jobs, wb_jobs, job, a_banks, b_banks, a_clr, b_clr, m_clr, n_clr,
                                m_table, n_table)

        m.d.comb += self.busy.eq((self.queue_count != 0) | ~producer_idle | v_go | self._backend_busy
                                 | ~validator_fsm.ongoing("IDLE"))
        m.d.sync += self.stall_bus.eq((self.ld_req.valid & ~self.ld_req.ready) |
                                      (self.wb_req.valid & ~self.wb_req.ready))
        return m

    # ---------------------------------------------------------------------------------------------------
    def _elaborate_loader(self, m, go, done, op, a_buf, b_buf, m_par, t_par, tm_eff, tn_eff, kc_eff, base,
                          m_table, n_table, k_table, a_wr, b_wr):
        R, C, P, eb = self.rows, self.cols, self.lanes, self.eb
        AW = self.addr_bits
        tm, tn = self.tile_m // R, self.tile_n // C
        KW = self.chunk_k // P
        Tm, Tn = self.tile_m, self.tile_n
        Tmax = max(Tm, Tn, self.chunk_k)
        ebs = eb.bit_length() - 1

        kinner = Signal()                     # inner index is K (else M for A / N for B)
        outer, inner = Signal(range(Tmax + 1), name="outer"), Signal(range(Tmax + 1), name="inner")
        n_outer, n_inner = Signal(range(Tmax + 1)), Signal(range(Tmax + 1))
        byte = Signal(AW)
        stretch = Signal(range(Tmax + 1))
        banks = Signal(range(max(R, C) + 1))
        # Position of the M/N index (row of the panel) as bank and block, and of K as lane and word.
        mn_bank, mn_blk = Signal(range(max(R, C))), Signal(range(max(tm, tn) + 1))
        k_lane, k_word = Signal(range(P)), Signal(range(KW + 1))
        outstanding = Signal(range(LD_OUTSTANDING + 1))
        pipe_busy = Signal()                  # responses still on their way into the scratchpads

        run_info = data.StructLayout({"op": 1, "kinner": 1, "bank": range(max(R, C)), "addr": range(2 * max(tm, tn) * KW),
                                      "lane": range(P), "n": range(9), "byte": 3, "buf": 1})
        m.submodules.ld_info = info = fifo.SyncFIFO(width=run_info.size, depth=LD_OUTSTANDING)

        # Table reads: the outer entry is the panel row's offset, the inner entry the stretch's start.
        m_index, n_index, k_index = Signal(range(Tm)), Signal(range(Tn)), Signal(range(self.chunk_k))
        m.d.comb += [m_table.r_addr[0].eq(_table_addr(m_par, m_index, Tm)),
                     n_table.r_addr[0].eq(_table_addr(t_par, n_index, Tn)), k_table.r_addr[0].eq(k_index)]
        mn_pos = Mux(kinner, outer, inner)
        k_pos = Mux(kinner, inner, outer)
        m.d.comb += [m_index.eq(mn_pos), n_index.eq(mn_pos), k_index.eq(k_pos)]
        # Table reads are registered (two cycles: states wait for them), and A's or B's fields are picked
        # after that register.
        m_tq, n_tq, k_tq = m_table.r_data[0], n_table.r_data[0], k_table.r_data[0]
        mn_entry, k_off = Signal(signed(self.offset_bits)), Signal(signed(self.offset_bits))
        mn_rem, k_rem = Signal(self.rem_bits), Signal(self.rem_bits)
        in_rem = Signal(self.rem_bits)                         # rem of the stretch's (inner) direction
        m.d.comb += [mn_entry.eq(Mux(op, n_tq.off0, m_tq.off0)), mn_rem.eq(Mux(op, n_tq.rem0, m_tq.rem0)),
                     k_off.eq(Mux(op, k_tq.off1, k_tq.off0)), k_rem.eq(Mux(op, k_tq.rem1, k_tq.rem0)),
                     in_rem.eq(Mux(kinner, k_rem, mn_rem))]
        left = Signal(range(Tmax + 1))                         # n_inner − inner, kept as a register
        probe_k_rem, probe_mn_rem = Signal(self.rem_bits), Signal(self.rem_bits)

        # A run is at most what is left of the scratch word (K runs: P − k_lane lanes) or of the bank block
        # (M/N runs: banks − mn_bank), of the memory word (P − byte's element in it) and of the stretch. The
        # first two are registers (`lim_lane`, `lim_mem`) kept beside k_lane/mn_bank and byte: a run of n
        # leaves lim − n, or a whole word/block when it used all of it; a stretch's first decision finds
        # lim_lane set (k_lane/mn_bank have not moved since the last run) and lim_mem set by SETUP.
        n_run = Signal(range(9))
        lim_lane = Signal(range(max(R, C, P) + 1))
        lim_mem = Signal(range(P + 1))
        issue = Signal()
        # min(stretch, lim_lane, lim_mem) from three compares side by side (not a chain of two minimums)
        st_le_lane, st_le_mem = stretch <= lim_lane, stretch <= lim_mem
        m.d.comb += n_run.eq(Mux(st_le_lane & st_le_mem, stretch, Mux(lim_lane < lim_mem, lim_lane, lim_mem)))
        # Whether the decided run ends its stretch and its panel row: flags set with the decision (and, while
        # whole words go out every cycle, with each request), so the request's bookkeeping compares nothing.
        # `stretch_is_left`: the stretch runs to the end of the row (stretch and left fall together).
        fin_stretch, fin_row, stretch_is_left = (Signal(name=n) for n in ("fin_stretch", "fin_row",
                                                                        "stretch_is_left"))
        last_row = Signal()                   # outer + 1 == n_outer, as a register
        # The run length is decided a cycle before its request (n_q, n_ok), so the request's bookkeeping
        # starts from registers. While runs are whole aligned words (K runs, or M/N runs over exactly P
        # banks) the next length is known to be P again and requests go out every cycle.
        n_q = Signal(range(9))
        n_ok = Signal()
        banks_is_p = Signal()

        word_addr = Signal(range(2 * max(tm, tn) * KW))
        buf = Mux(op, b_buf, a_buf)
        if tm == tn:
            m.d.comb += word_addr.eq(_place(buf, tm * KW, _place(mn_blk, KW, k_word)))
        else:
            per_buf = Mux(op, tn * KW, tm * KW)
            m.d.comb += word_addr.eq(Mux(buf, per_buf, 0) + mn_blk * KW + k_word)
        info_in = Signal(run_info)
        m.d.comb += [info_in.op.eq(op), info_in.kinner.eq(kinner), info_in.bank.eq(mn_bank),
                     info_in.addr.eq(word_addr), info_in.lane.eq(k_lane), info_in.n.eq(n_q),
                     info_in.byte.eq(byte[:3]), info_in.buf.eq(buf)]
        m.d.comb += [info.w_data.eq(info_in), self.ld_req.payload.eq(byte[3:])]

        def advance_mn(amount, limit):
            nb = mn_bank + amount
            with m.If(nb >= limit):
                m.d.sync += [mn_bank.eq(nb - limit), mn_blk.eq(mn_blk + 1)]
            with m.Else():
                m.d.sync += mn_bank.eq(nb)

        def advance_k(amount):
            nl = k_lane + amount
            m.d.sync += [k_lane.eq(nl[:P.bit_length() - 1] if P > 1 else 0), k_word.eq(k_word + (nl >> (P.bit_length() - 1)))]

        with m.FSM(name="loader"):
            with m.State("IDLE"):
                with m.If(go):
                    m.d.sync += [outer.eq(0), inner.eq(0), mn_bank.eq(0), mn_blk.eq(0), k_lane.eq(0),
                                 k_word.eq(0), kinner.eq(1)]
                    m.next = "PROBE"
            with m.State("PROBE"):
                # Entry 0 of both tables is being read: pick the direction with the longer contiguous run.
                m.next = "PROBE_LATCH"
            with m.State("PROBE_LATCH"):
                m.next = "PROBE_PICK"
            with m.State("PROBE_PICK"):
                # (A's or B's rem fields into registers first: one cycle per panel)
                m.d.sync += [probe_k_rem.eq(k_rem), probe_mn_rem.eq(mn_rem)]
                m.next = "CHOOSE"
            with m.State("CHOOSE"):
                use_k = probe_k_rem >= probe_mn_rem
                mn_total = Mux(op, tn_eff, tm_eff)
                m.d.sync += [kinner.eq(use_k), banks.eq(Mux(op, C, R)), banks_is_p.eq(Mux(op, C == P, R == P)),
                             lim_lane.eq(Mux(use_k, P, Mux(op, C, R))),
                             n_outer.eq(Mux(use_k, mn_total, kc_eff)), n_inner.eq(Mux(use_k, kc_eff, mn_total)),
                             last_row.eq(Mux(use_k, mn_total, kc_eff) == 1),
                             left.eq(Mux(use_k, kc_eff, mn_total))]
                m.next = "FETCH"
            with m.State("FETCH"):
                m.next = "LATCH"
            with m.State("LATCH"):
                m.next = "SETUP"
            with m.State("SETUP"):
                # The element address is the sum of the two entries (the base is in the K offsets).
                elem = mn_entry + k_off
                m.d.sync += [byte.eq(elem << ebs), lim_mem.eq(P - elem[:3 - ebs])]
                m.d.sync += [stretch.eq(Mux(in_rem < left, in_rem, left)), stretch_is_left.eq(in_rem >= left),
                             n_ok.eq(0)]
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(~n_ok):
                    ends = st_le_lane & st_le_mem                   # the run is the rest of the stretch
                    m.d.sync += [n_q.eq(n_run), n_ok.eq(1), fin_stretch.eq(ends), fin_row.eq(ends & stretch_is_left)]
                with m.Else():
                    m.d.comb += [self.ld_req.valid.eq(info.w_rdy), issue.eq(self.ld_req.ready & info.w_rdy)]
                with m.If(issue):
                    m.d.comb += info.w_en.eq(1)
                    m.d.sync += [byte.eq(byte + (n_q << ebs)), stretch.eq(stretch - n_q),
                                 inner.eq(inner + n_q), left.eq(left - n_q),
                                 n_ok.eq((n_q == P) & (kinner | banks_is_p) & (stretch >= 2 * P)),
                                 # (only used when n_ok stays set: then the next run is P again)
                                 fin_stretch.eq(stretch == 2 * P), fin_row.eq((stretch == 2 * P) & stretch_is_left),
                                 lim_mem.eq(Mux(n_q == lim_mem, P, lim_mem - n_q)),
                                 lim_lane.eq(Mux(n_q == lim_lane, Mux(kinner, P, banks), lim_lane - n_q))]
                    with m.If(kinner):
                        advance_k(n_q)
                    with m.Else():
                        advance_mn(n_q, banks)
                    with m.If(fin_stretch):
                        with m.If(fin_row):
                            m.d.sync += [inner.eq(0), outer.eq(outer + 1), left.eq(n_inner),
                                         lim_lane.eq(Mux(kinner, P, banks)), last_row.eq(outer + 2 == n_outer)]
                            with m.If(kinner):
                                m.d.sync += [k_lane.eq(0), k_word.eq(0)]
                                advance_mn(1, banks)
                            with m.Else():
                                m.d.sync += [mn_bank.eq(0), mn_blk.eq(0)]
                                advance_k(1)
                            with m.If(last_row):
                                m.next = "DRAIN"
                            with m.Else():
                                m.next = "FETCH"
                        with m.Else():
                            m.next = "FETCH"
            with m.State("DRAIN"):
                with m.If((outstanding == 0) & ~info.r_rdy & ~pipe_busy):
                    m.d.comb += done.eq(1)
                    m.next = "IDLE"

        # Responses: in order, always accepted. Two register stages put them into the scratchpads, one path
        # shared by A and B: stage 1 rotates the word so that element e of the run sits in lane
        # `lane + e` (runs along K) or in lane `bank + e` mod P (runs along M/N: bank b takes lane b mod P,
        # replicated, and writes only lane `lane`); stage 2 picks per bank and writes.
        m.d.comb += self.ld_resp.ready.eq(1)
        got = self.ld_resp.valid
        m.d.comb += info.r_en.eq(got)
        sent = info.w_en
        with m.If(sent & ~got):
            m.d.sync += outstanding.eq(outstanding + 1)
        with m.Elif(got & ~sent):
            m.d.sync += outstanding.eq(outstanding - 1)
        run = Signal(run_info)
        m.d.comb += run.eq(info.r_data)
        ew = 8 * eb
        NB = max(R, C)
        lane_bits = (P - 1).bit_length()
        # Stage 1 registers: the word, where the run starts, its rotation and its enables.
        got1, word1, rot1 = Signal(), Signal(64), Signal(max(1, lane_bits))
        r1 = Signal(run_info)
        m.d.sync += [got1.eq(got), word1.eq(self.ld_resp.payload), r1.eq(run)]
        if P > 1:
            m.d.sync += rot1.eq((run.byte >> ebs) - Mux(run.kinner, run.lane, run.bank[:lane_bits]))
        run_ones = Signal(8)                  # n ones (a register beside r1)
        m.d.sync += run_ones.eq((Const(1, 9) << run.n) - 1)
        # Stage 2 registers: the rotated word, the banks written and their lane enables.
        got2, op2, kinner2 = Signal(), Signal(), Signal()
        rotated = Signal(64)
        addr2 = Signal.like(r1.addr)
        banks2 = Signal(NB)
        lanes2 = Signal(P)
        elems1 = [word1[e * ew:(e + 1) * ew] for e in range(P)]
        rot_value = Signal(64)
        if P > 1:
            with m.Switch(rot1):
                for amount in range(P):
                    with m.Case(amount):
                        m.d.comb += rot_value.eq(Cat(*(elems1[(e + amount) % P] for e in range(P))))
        else:
            m.d.comb += rot_value.eq(word1)
        m.d.sync += [got2.eq(got1), op2.eq(r1.op), kinner2.eq(r1.kinner), rotated.eq(rot_value),
                     addr2.eq(r1.addr),
                     banks2.eq(Mux(r1.kinner, Const(1, NB) << r1.bank, (run_ones << r1.bank)[:NB])),
                     lanes2.eq(Mux(r1.kinner, (run_ones << r1.lane)[:P], Const(1, P) << r1.lane))]
        rot_elems = [rotated[e * ew:(e + 1) * ew] for e in range(P)]
        for b in range(NB):
            bank_data = Signal(64, name=f"ld_data_{b}")
            m.d.comb += bank_data.eq(Mux(kinner2, rotated, rot_elems[b % P].replicate(P)))
            for op_value, ports in ((0, a_wr), (1, b_wr)):
                if b >= len(ports):
                    continue
                bank = ports[b]
                m.d.comb += [bank.w_addr.eq(addr2), bank.w_data.eq(bank_data),
                             bank.w_en.eq(Mux(got2 & (op2 == op_value) & banks2[b], lanes2, 0))]
        m.d.comb += pipe_busy.eq(got1 | got2)

    # ---------------------------------------------------------------------------------------------------
    def _elaborate_backend(self, m, feed_jobs, wb_jobs, job, a_rd, b_rd, a_clr, b_clr, m_clr, n_clr,
                           m_table, n_table):
        R, C, P, eb = self.rows, self.cols, self.lanes, self.eb
        tm, tn = self.tile_m // R, self.tile_n // C
        KW = self.chunk_k // P
        Tm, Tn, Kc = self.tile_m, self.tile_n, self.chunk_k
        ew = 8 * eb
        AB = self.acc_bits
        m.submodules.array = array = SystolicArray(R, C, self.width, AB, self.mult)

        # ---- feeder ----
        cur = Signal(job)
        cur_live = Signal()               # cur has intervals left
        head = Signal(job)
        m.d.comb += head.eq(feed_jobs.r_data)
        mi, nj = Signal(range(tm + 1)), Signal(range(tn + 1))
        k = Signal(range(max(Kc, R) + 1))
        k1 = Signal(range(max(Kc, R) + 2))   # k + 1, kept beside k (no adder in front of the step tests)
        klen = Signal(range(max(Kc, R) + 1))
        kvalid = Signal(range(Kc + 1))
        real = Signal()                   # the open interval is a sub-tile (else an idle gap)
        gap_len = Signal(range(R + 1))
        open_last = Signal()              # the open sub-tile is its job's last
        open_mi, open_nj = Signal.like(mi), Signal.like(nj)
        in_flight = Signal(range(3))
        credit_back = Signal()
        meta = data.StructLayout({"real": 1, "mi": range(tm + 1), "nj": range(tn + 1), "last": 1})
        # One entry per interval between its closing `first` token and its drain burst: intervals last at
        # least R cycles and the burst comes R + 8 cycles later, so (R + 8) // R + 3 entries never overflow.
        # A power-of-two inner FIFO (SyncFIFOBuffered adds its output register) keeps the pointers cheap.
        m.submodules.drain_meta = drain_meta = fifo.SyncFIFOBuffered(
            width=meta.size, depth=_pow2_at_least((R + 8) // R + 2) + 1)
        meta_in = Signal(meta)
        m.d.comb += [meta_in.real.eq(real), meta_in.mi.eq(open_mi), meta_in.nj.eq(open_nj),
                     meta_in.last.eq(open_last), drain_meta.w_data.eq(meta_in)]

        # Next sub-tile candidate: the rest of `cur`, else the head job. It is registered (`c_*`, one cycle
        # behind the state it was computed from) and dropped for the cycle after a start, when it is stale;
        # intervals last ≥ R steps, so for R ≥ 2 this costs nothing.
        nmi, nnj = Signal.like(mi), Signal.like(nj)
        cand = Signal(job)
        cand_ok = Signal()
        with m.If(cur_live):
            m.d.comb += [cand.eq(cur), cand_ok.eq(1), nmi.eq(mi), nnj.eq(nj)]
        with m.Else():
            m.d.comb += [cand.eq(head), cand_ok.eq(feed_jobs.r_rdy), nmi.eq(0), nnj.eq(0)]
        c_job = Signal(job)
        c_ok, c_from_cur, c_last, c_last_nj, c_any, c_more = (Signal(name=f"c_{n}") for n in
                                                              ("ok", "from_cur", "last", "last_nj", "any", "more"))
        c_mi, c_nj = Signal.like(mi), Signal.like(nj)
        c_klen = Signal.like(klen)
        start = Signal()
        # (each alternative compared on its own, `cur_live` only picks the result)
        last_nj = Mux(cur_live, nj + 1 == cur.nj_count, head.nj_count == 1)
        last_mi = Mux(cur_live, mi + 1 == cur.mi_count, head.mi_count == 1)
        klen_new = Mux(cand.kc_eff < R, R, cand.kc_eff)
        m.d.sync += [c_job.eq(cand), c_ok.eq(cand_ok & ~start), c_from_cur.eq(cur_live), c_mi.eq(nmi),
                     c_nj.eq(nnj), c_last_nj.eq(last_nj), c_last.eq(last_nj & last_mi), c_klen.eq(klen_new),
                     c_any.eq(cand.kc_eff > 0), c_more.eq(klen_new > 1)]

        boundary = Signal()              # this cycle opens a new interval (first token)
        emit_valid = Signal()
        emit_k = Signal.like(k)
        emit_mi, emit_nj = Signal.like(mi), Signal.like(nj)
        emit_job = Signal(job)
        credit_r = Signal()                  # credits return one cycle after the write-back frees them
        m.d.sync += credit_r.eq(credit_back)
        # streaming: the open sub-tile has steps left (k < klen); step_ok: step k is inside the chunk
        # (k < kvalid); gap_ok: an idle gap has lasted R cycles. All registers.
        streaming, step_ok, gap_ok = Signal(), Signal(), Signal()
        can_start = c_ok & (in_flight < 2) & (real | gap_ok)
        finishing = real & ~streaming    # the open sub-tile has streamed all its steps
        with m.If(streaming):
            m.d.comb += [emit_valid.eq(step_ok), emit_k.eq(k), emit_mi.eq(open_mi), emit_nj.eq(open_nj),
                         emit_job.eq(cur)]
            m.d.sync += [k.eq(k1), k1.eq(k1 + 1), streaming.eq(k1 != klen), step_ok.eq(k1 < kvalid)]
        with m.Elif(can_start):
            m.d.comb += [boundary.eq(1), start.eq(1), emit_valid.eq(c_any), emit_k.eq(0),
                         emit_mi.eq(c_mi), emit_nj.eq(c_nj), emit_job.eq(c_job)]
            m.d.sync += [real.eq(1), k.eq(1), k1.eq(2), klen.eq(c_klen), kvalid.eq(c_job.kc_eff), open_mi.eq(c_mi),
                         open_nj.eq(c_nj), open_last.eq(c_last), gap_len.eq(0), gap_ok.eq(0),
                         streaming.eq(c_more), step_ok.eq(c_job.kc_eff > 1)]
            with m.If(~c_from_cur):
                m.d.comb += feed_jobs.r_en.eq(1)
                m.d.sync += cur.eq(c_job)
            # Advance the position within the job.
            with m.If(c_last):
                m.d.sync += [cur_live.eq(0), mi.eq(0), nj.eq(0)]
            with m.Elif(c_last_nj):
                m.d.sync += [cur_live.eq(1), mi.eq(c_mi + 1), nj.eq(0)]
            with m.Else():
                m.d.sync += [cur_live.eq(1), mi.eq(c_mi), nj.eq(c_nj + 1)]
        with m.Elif(real):
            m.d.comb += boundary.eq(1)            # open an idle gap so the finished sub-tile drains
            m.d.sync += [real.eq(0), gap_len.eq(1), gap_ok.eq(R <= 1)]
        with m.Else():
            with m.If(gap_len < R):
                m.d.sync += [gap_len.eq(gap_len + 1), gap_ok.eq(gap_len + 1 >= R)]
        m.d.comb += drain_meta.w_en.eq(boundary)
        # A finished job releases its panels.
        with m.If(finishing & open_last):
            m.d.comb += b_clr.eq(Mux(cur.b_buf, 0b10, 0b01))
            with m.If(cur.release_a):
                m.d.comb += a_clr.eq(Mux(cur.a_buf, 0b10, 0b01))
        with m.If(start & ~credit_r):
            m.d.sync += in_flight.eq(in_flight + 1)
        with m.Elif(credit_r & ~start):
            m.d.sync += in_flight.eq(in_flight - 1)

        # A register stage after the feeder's decision, scratch reads (one cycle), then the array.
        e_abuf, e_bbuf, e_valid, e_first = Signal(), Signal(), Signal(), Signal()
        e_mi, e_nj, e_k = Signal.like(mi), Signal.like(nj), Signal.like(k)
        e_tm, e_tn = Signal(range(Tm + 1)), Signal(range(Tn + 1))
        m.d.sync += [e_abuf.eq(emit_job.a_buf), e_bbuf.eq(emit_job.b_buf), e_valid.eq(emit_valid),
                     e_first.eq(boundary), e_mi.eq(emit_mi), e_nj.eq(emit_nj), e_k.eq(emit_k),
                     e_tm.eq(emit_job.tm_eff), e_tn.eq(emit_job.tn_eff)]
        k_word_e = e_k >> (P.bit_length() - 1)
        for i, bank in enumerate(a_rd):
            m.d.comb += bank.r_addr[0].eq(_place(e_abuf, tm * KW, _place(e_mi, KW, k_word_e)))
        for j, bank in enumerate(b_rd):
            m.d.comb += bank.r_addr[0].eq(_place(e_bbuf, tn * KW, _place(e_nj, KW, k_word_e)))
        # Scratchpad reads are registered (RegisteredMemory: on ECP5 the DP16KD's own output register), so
        # the words arrive two cycles after their addresses with no logic in front of them.
        lane_d, lane_q = Signal(range(P)), Signal(range(P))
        valid_d, first_d, valid_q, first_q = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [lane_d.eq(e_k[:P.bit_length() - 1] if P > 1 else 0), valid_d.eq(e_valid),
                     first_d.eq(e_first), lane_q.eq(lane_d), valid_q.eq(valid_d), first_q.eq(first_d)]
        for i, bank in enumerate(a_rd):
            word_q = bank.r_data[0]
            lanes = data.ArrayLayout(unsigned(ew), P)(word_q)
            a_lane = Signal(signed(ew), name=f"a_lane{i}", reset_less=True)   # registered before the DSPs
            m.d.sync += a_lane.eq(Mux(valid_q, lanes[lane_q], 0))
            m.d.comb += array.a[i].eq(a_lane)
        for j, bank in enumerate(b_rd):
            word_q = bank.r_data[0]
            lanes = data.ArrayLayout(unsigned(ew), P)(word_q)
            # No zero gating for B: an idle step's A is 0, and a cell always pairs A and B of the same step.
            b_lane = Signal(signed(ew), name=f"b_lane{j}", reset_less=True)
            m.d.sync += b_lane.eq(lanes[lane_q])
            m.d.comb += array.b[j].eq(b_lane)
        first_a = Signal()
        m.d.sync += first_a.eq(first_q)
        m.d.comb += array.first.eq(first_a)

        # Counters: useful MACs of this step (rows and columns inside the tile).
        # (pipelined: the counters see each step a few cycles late)
        rows_v = Signal(range(R + 1))
        cols_v = Signal(range(C + 1))
        step_v = Signal()
        rem_rows = e_tm - e_mi * R
        rem_cols = e_tn - e_nj * C
        m.d.sync += [rows_v.eq(Mux(rem_rows > R, R, rem_rows)), cols_v.eq(Mux(rem_cols > C, C, rem_cols)),
                     step_v.eq(e_valid)]
        with m.If(step_v):
            # rows × columns from a table of products (a `*` here became a combinational MULT18X18D)
            m.d.sync += self.array_step.eq(1)
            with m.Switch(Cat(cols_v, rows_v)):
                for r in range(R + 1):
                    for c in range(C + 1):
                        with m.Case(c | r << len(cols_v)):
                            m.d.sync += self.mac_add.eq(r * c)
                with m.Default():
                    m.d.sync += self.mac_add.eq(0)
        with m.Else():
            m.d.sync += [self.mac_add.eq(0), self.array_step.eq(0)]
        busy_r = Signal()                    # (a cycle late: the busy OR is wide, these are statistics)
        m.d.sync += busy_r.eq(self.busy)
        m.d.sync += [
            self.stall_operand.eq(busy_r & ~emit_valid & ~c_ok & ~streaming),
            self.stall_drain.eq(busy_r & ~emit_valid & (c_ok | streaming)),
        ]

        # ---- drain: per column, difference from the previous shadow; keep sub-tiles, drop gaps ----
        m.submodules.wb_intervals = wb_intervals = fifo.SyncFIFOBuffered(width=meta.size, depth=4)
        col_fifos = []
        for j in range(C):
            # Credits keep at most two sub-tiles' values (2R) here: a sub-tile starts only after the write-back
            # popped every value of the one two before it, and its values arrive R + 3 cycles after it starts.
            f = fifo.SyncFIFO(width=AB, depth=_pow2_at_least(2 * R))
            m.submodules[f"drain_col{j}"] = f
            col_fifos.append(f)
        burst_start = Signal(C)
        tile_complete = Signal()          # the last value of a sub-tile enters its column FIFO
        burst_real = Signal(C)            # per column: the current burst belongs to a sub-tile
        prev_valid = Signal(C)
        m.d.sync += prev_valid.eq(array.out_valid)
        for j in range(C):
            m.d.comb += burst_start[j].eq(array.out_valid[j] & array.out_first[j])
        # Column 0's burst start pops the interval's metadata; the real flag follows the columns' skew.
        meta_out = Signal(meta)
        m.d.comb += meta_out.eq(drain_meta.r_data)
        with m.If(burst_start[0]):
            m.d.comb += drain_meta.r_en.eq(1)
            m.d.comb += [wb_intervals.w_data.eq(meta_out), wb_intervals.w_en.eq(meta_out.real)]
        real_line = Signal(C)
        m.d.sync += real_line.eq(Cat(meta_out.real & burst_start[0], real_line[:-1]) if C > 1
                                 else meta_out.real & burst_start[0])
        for j in range(C):
            start_real_j = (meta_out.real & burst_start[0]) if j == 0 else real_line[j - 1]
            with m.If(burst_start[j]):
                m.d.sync += burst_real[j].eq(start_real_j)
            prev = [Signal(AB, name=f"prev_{j}_{i}") for i in range(R)]
            value = array.out_data[j]
            keep = Mux(burst_start[j], start_real_j, burst_real[j])
            with m.If(array.out_valid[j]):
                m.d.sync += [prev[i].eq(prev[i + 1]) for i in range(R - 1)]
                m.d.sync += prev[R - 1].eq(value)
            m.d.comb += [col_fifos[j].w_data.eq(value - prev[0]), col_fifos[j].w_en.eq(array.out_valid[j] & keep)]
            if j == C - 1:
                m.d.comb += tile_complete.eq(array.out_valid[j] & array.out_last[j] & keep)

        # ---- write-back ----
        wjob = Signal(job)
        m.d.comb += wjob.eq(wb_jobs.r_data)
        ival = Signal(meta)
        m.d.comb += ival.eq(wb_intervals.r_data)
        r_i, c_j = Signal(range(R)), Signal(range(C))
        m_loc, n_loc = Signal(range(Tm + R)), Signal(range(Tn + C))
        pend_layout = data.StructLayout({"addr_d": unsigned(self.addr_bits - 2),
                                         "addr_c": unsigned(self.addr_bits - 2),
                                         "value": unsigned(32), "read": 1})
        m.submodules.wb_pending = pending = fifo.SyncFIFOBuffered(width=pend_layout.size, depth=8)
        m.submodules.wb_inflight = inflight = fifo.SyncFIFO(width=pend_layout.size, depth=WB_OUTSTANDING)
        m.submodules.wb_writes = writes = fifo.SyncFIFOBuffered(width=pend_layout.size, depth=WB_OUTSTANDING)
        s1_valid, s1_keep = Signal(), Signal()
        s1_value = Signal(32)
        s2_valid, s2_keep = Signal(), Signal()
        # Everything that gates `pop` is a register: `room` is decided a cycle ahead (the pipeline and the
        # pending FIFO grow by at most one entry per cycle), and a sub-tile is popped only once all of its
        # values are in the column FIFOs (`arrived`), so no per-column readiness is needed.
        room = Signal()
        m.d.sync += room.eq(pending.w_level + s1_valid + s2_valid + 1 < pending.depth - 1)
        col_val = Signal(signed(AB))        # the sub-tile's exact sum (see array_acc_bits)
        with m.Switch(c_j):
            for j in range(C):
                with m.Case(j):
                    m.d.comb += col_val.eq(col_fifos[j].r_data)
        arrived = Signal(range(3))
        interval_done = Signal()
        with m.If(tile_complete & ~interval_done):
            m.d.sync += arrived.eq(arrived + 1)
        with m.Elif(interval_done & ~tile_complete):
            m.d.sync += arrived.eq(arrived - 1)
        pop = Signal()
        # (wb_intervals.r_rdy: on a 1×1 array the interval's metadata and its only value arrive together.)
        m.d.comb += pop.eq((arrived != 0) & wb_intervals.r_rdy & wb_jobs.r_rdy & room)
        m.d.comb += [m_table.r_addr[1].eq(_table_addr(wjob.m_par, m_loc, Tm)),
                     n_table.r_addr[1].eq(_table_addr(wjob.t_par, n_loc, Tn))]
        m_now = _place(ival.mi, R, r_i)
        n_now = _place(ival.nj, C, c_j)
        m.d.comb += [m_loc.eq(m_now), n_loc.eq(n_now)]
        job_end = Signal()
        with m.If(pop):
            with m.Switch(c_j):
                for j in range(C):
                    with m.Case(j):
                        m.d.comb += col_fifos[j].r_en.eq(1)
            m.d.sync += [s1_valid.eq(1), s1_value.eq(col_val),
                         s1_keep.eq((m_now < wjob.tm_eff) & (n_now < wjob.tn_eff))]
            with m.If(c_j == C - 1):
                m.d.sync += c_j.eq(0)
                with m.If(r_i == R - 1):
                    m.d.sync += r_i.eq(0)
                    m.d.comb += [wb_intervals.r_en.eq(1), credit_back.eq(1), interval_done.eq(1)]
                    with m.If(ival.last):
                        m.d.comb += job_end.eq(1)
                with m.Else():
                    m.d.sync += r_i.eq(r_i + 1)
            with m.Else():
                m.d.sync += c_j.eq(c_j + 1)
        with m.Else():
            m.d.sync += s1_valid.eq(0)
        # Stage 2: the tables' outputs are registered; stage 3: compute addresses.
        pend = Signal(pend_layout)
        s1_job, s2_job = Signal(job), Signal(job)
        s2_value = Signal(32)
        m_q, n_q = m_table.r_data[1], n_table.r_data[1]           # (registered reads)
        m.d.sync += [s1_job.eq(wjob), s2_job.eq(s1_job), s2_valid.eq(s1_valid), s2_keep.eq(s1_keep),
                     s2_value.eq(s1_value)]
        addr_d = m_q.off2 + n_q.off2                     # (the bases are in role N's offsets)
        addr_c = Mux(s2_job.first_chunk, m_q.off1 + n_q.off1, addr_d)
        m.d.comb += [pend.addr_d.eq(addr_d), pend.addr_c.eq(addr_c), pend.value.eq(s2_value),
                     pend.read.eq(~s2_job.first_chunk | s2_job.accumulate),
                     pending.w_data.eq(pend), pending.w_en.eq(s2_valid & s2_keep)]
        # Port: queued writes first, then reads (C or partial D), then direct writes.
        pq = Signal(pend_layout)
        wq = Signal(pend_layout)
        m.d.comb += [pq.eq(pending.r_data), wq.eq(writes.r_data)]
        req = Signal(WbRequest(self.addr_bits - 2))
        with m.If(writes.r_rdy):
            m.d.comb += [req.addr.eq(wq.addr_d), req.write.eq(1), req.data.eq(wq.value),
                         self.wb_req.valid.eq(1)]
            m.d.comb += writes.r_en.eq(self.wb_req.ready)
        with m.Elif(pending.r_rdy & pq.read):
            m.d.comb += [req.addr.eq(pq.addr_c), req.write.eq(0), self.wb_req.valid.eq(inflight.w_rdy)]
            m.d.comb += [pending.r_en.eq(self.wb_req.ready & inflight.w_rdy),
                         inflight.w_en.eq(self.wb_req.ready & inflight.w_rdy), inflight.w_data.eq(pq)]
        with m.Elif(pending.r_rdy):
            m.d.comb += [req.addr.eq(pq.addr_d), req.write.eq(1), req.data.eq(pq.value),
                         self.wb_req.valid.eq(1)]
            m.d.comb += pending.r_en.eq(self.wb_req.ready)
        m.d.comb += self.wb_req.payload.eq(req)
        m.d.comb += self.wb_resp.ready.eq(writes.w_rdy)
        fin = Signal(pend_layout)
        m.d.comb += fin.eq(inflight.r_data)
        done_w = Signal(pend_layout)
        m.d.comb += [done_w.addr_d.eq(fin.addr_d), done_w.value.eq(fin.value + self.wb_resp.payload)]
        with m.If(self.wb_resp.valid & writes.w_rdy):
            m.d.comb += [inflight.r_en.eq(1), writes.w_en.eq(1), writes.w_data.eq(done_w)]

        # Job end: once every write of the job has been accepted, release tables and count the descriptor.
        ending = Signal()
        with m.If(job_end):
            m.d.sync += ending.eq(1)
        quiet = ~s1_valid & ~s2_valid & ~pending.r_rdy & ~inflight.r_rdy & ~writes.r_rdy
        # (`pop`, hence `job_end`, is never set while `ending`: no `~job_end` term is needed, and none is
        # wanted — the completion strobe and the job FIFO's read then depend on registers only.)
        with m.If(ending & quiet):
            m.d.sync += ending.eq(0)
            m.d.comb += wb_jobs.r_en.eq(1)
            with m.If(wjob.release_n):
                m.d.comb += n_clr.eq(Mux(wjob.t_par, 0b10, 0b01))
            with m.If(wjob.release_m):
                m.d.comb += m_clr.eq(Mux(wjob.m_par, 0b10, 0b01))
            m.d.comb += self.completed.eq(wjob.desc_last)
        # While a job is ending, the next interval must wait for the job FIFO to advance.
        with m.If(ending):
            m.d.comb += pop.eq(0)

        m.d.comb += self._backend_busy.eq(feed_jobs.r_rdy | cur_live | real | wb_jobs.r_rdy | (in_flight != 0)
                                          | ending | s1_valid | s2_valid | pending.r_rdy | inflight.r_rdy
                                          | writes.r_rdy)


class ContractionEngine(wiring.Component):
    """The engine with its register bank (`regs`) and descriptor memory (`desc`) on the SoC bus."""

    def __init__(self, **params):
        self.params = params
        self.core = EngineCore(**params)
        self.region = engine_register_region()
        self.queue = self.core.queue
        core = self.core
        desc_words = core.queue * cf.DESC_SLOT_WORDS
        super().__init__({
            "regs": In(BusSignature(max(1, (len(self.region.registers) - 1).bit_length()))),
            "desc": In(BusSignature(max(1, (desc_words - 1).bit_length()))),
            "ld_req": Out(stream.Signature(unsigned(core.addr_bits - 3))),
            "ld_resp": In(stream.Signature(unsigned(64))),
            "wb_req": Out(stream.Signature(WbRequest(core.addr_bits - 2))),
            "wb_resp": In(stream.Signature(unsigned(32))),
            "busy": Out(1),                  # work queued or in flight (the simulator must keep clocking)
        })

    def elaborate(self, platform):
        from .bus import RegisterBank
        m = Module()
        m.submodules.regs = regs = RegisterBank(self.region)
        wiring.connect(m, wiring.flipped(self.regs), regs.bus)

        # Abort: hold the core in reset for a few cycles (outstanding responses are dropped meanwhile).
        abort = Signal()
        abort_count = Signal(range(ABORT_CYCLES + 1))
        with m.If(regs.control_written & self.regs.w_data[0]):
            m.d.sync += abort_count.eq(ABORT_CYCLES)
        with m.Elif(abort_count != 0):
            m.d.sync += abort_count.eq(abort_count - 1)
        # `abort` is a register (it resets the whole core: no logic in front of that fan-out).
        m.d.sync += abort.eq((regs.control_written & self.regs.w_data[0]) | (abort_count > 1))
        m.submodules.core = core = ResetInserter({"sync": abort})(self.core)
        m.d.comb += self.busy.eq(core.busy | abort)

        # Descriptor memory: the host writes slots; the validator reads them.
        depth = self.queue * cf.DESC_SLOT_WORDS
        # Read port 0 is the validator's, port 1 the host's; both are registered (two cycles).
        m.submodules.desc_mem = desc_mem = RegisteredMemory(shape=32, depth=depth, read_ports=2,
                                                            ram=self.core.ram)
        bus = self.desc
        m.d.comb += [desc_mem.r_addr[1].eq(bus.addr), desc_mem.w_addr.eq(bus.addr), desc_mem.w_data.eq(bus.w_data),
                     desc_mem.w_en.eq(bus.w_en & ~bus.ack), desc_mem.r_addr[0].eq(core.desc_addr),
                     core.desc_data.eq(desc_mem.r_data[0])]
        # Writes are acknowledged a cycle later; reads two cycles later, with the registered read's data
        # (the address is held until the acknowledgement).
        host_rd = Signal()
        m.d.sync += [bus.ack.eq(bus.w_en & ~bus.ack), host_rd.eq(bus.r_en & ~bus.ack & ~host_rd)]
        with m.If(host_rd):
            m.d.sync += bus.ack.eq(1)
        with m.If(bus.ack):
            m.d.comb += bus.r_data.eq(desc_mem.r_data[1])

        # Queue: submitted counts accepted submissions, taken counts descriptors the validator consumed;
        # `count` (submitted − taken) and `full` are kept as registers beside them.
        submitted, taken = Signal(32), Signal(32)
        count = Signal(range(self.queue + 1))
        full = Signal()
        accept = Signal()
        m.d.comb += accept.eq(regs.submit_written & ~full & ~abort)
        with m.If(accept):
            m.d.sync += submitted.eq(submitted + 1)
        with m.If(abort):
            m.d.sync += [taken.eq(submitted), count.eq(0), full.eq(0)]
        with m.Else():
            with m.If(core.take):
                m.d.sync += taken.eq(taken + 1)
            with m.If(accept & ~core.take):
                m.d.sync += [count.eq(count + 1), full.eq(count == self.queue - 1)]
            with m.Elif(core.take & ~accept):
                m.d.sync += [count.eq(count - 1), full.eq(0)]
        m.d.comb += [core.queue_count.eq(Mux(abort, 0, count)), core.head.eq(taken[:len(core.head)]),
                     core.seq.eq(taken)]

        wiring.connect(m, wiring.flipped(self.ld_req), core.ld_req)
        wiring.connect(m, core.ld_resp, wiring.flipped(self.ld_resp))
        wiring.connect(m, wiring.flipped(self.wb_req), core.wb_req)
        wiring.connect(m, core.wb_resp, wiring.flipped(self.wb_resp))

        # Counters.
        busy_cycles, mac_count = Signal(64), Signal(64)
        busy_hi, mac_hi = Signal(32), Signal(32)
        completed, array_cycles, st_op, st_drain, st_bus = (Signal(32, name=n) for n in
                                                            ("completed", "array_cycles", "st_op", "st_drain", "st_bus"))
        clear = regs.control_written & self.regs.w_data[1]
        busy_q = Signal()                   # (core.busy is a wide OR: registered before the 64-bit adder)
        m.d.sync += busy_q.eq(core.busy)
        with m.If(clear):
            m.d.sync += [v.eq(0) for v in (busy_cycles, mac_count, array_cycles, st_op, st_drain, st_bus)]
        with m.Else():
            m.d.sync += [busy_cycles.eq(busy_cycles + busy_q), mac_count.eq(mac_count + core.mac_add),
                         array_cycles.eq(array_cycles + core.array_step),
                         st_op.eq(st_op + core.stall_operand), st_drain.eq(st_drain + core.stall_drain),
                         st_bus.eq(st_bus + core.stall_bus)]
        with m.If(core.completed & ~abort):
            m.d.sync += completed.eq(completed + 1)
        with m.If(regs.busy_cycles_lo_read):
            m.d.sync += busy_hi.eq(busy_cycles[32:])
        with m.If(regs.mac_count_lo_read):
            m.d.sync += mac_hi.eq(mac_count[32:])
        # The register bank reads registers only (status is a cycle late, like every counter).
        status = Signal(3)
        m.d.sync += status.eq(Cat(core.busy | (count != 0), core.error, full))
        m.d.comb += [
            regs.status.eq(status),
            regs.error_code.eq(core.error_code), regs.error_index.eq(core.error_index),
            regs.submitted.eq(submitted), regs.completed.eq(completed), regs.queue_count.eq(count),
            regs.busy_cycles_lo.eq(busy_cycles[:32]), regs.busy_cycles_hi.eq(busy_hi),
            regs.mac_count_lo.eq(mac_count[:32]), regs.mac_count_hi.eq(mac_hi),
            regs.array_cycles.eq(array_cycles), regs.stall_operand.eq(st_op),
            regs.stall_drain.eq(st_drain), regs.stall_bus.eq(st_bus),
        ]
        return m
