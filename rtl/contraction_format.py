"""The contraction engine's descriptor format, error codes and registers, declared once.

Pure Python (no gateware): the engine, the golden model (host/contraction_model.py), the host driver
(host/engine.py) and the memory map all import these names. docs/contraction-engine.md explains them.

A descriptor computes D[m, n] = Σ_k A[m, k] · B[k, n]  (+ C[m, n] when `accumulate` is set), where m, n and
k are multi-indices: each of the `loops` loops has an extent, a role (which index it belongs to) and a signed
stride (in elements) for every operand. Operand X's element address is
    base_X + elem_bytes_X · Σ_{loops i whose role X uses} index_i · stride_X_i
A uses roles M and K, B uses K and N, C and D use M and N; strides of other roles are ignored.
Loops are listed outermost first; within a role, flattened indices run in that nesting order.
A and B hold signed integers of `width` bits; C and D hold int32, and every sum wraps modulo 2^32.
"""

import enum

#: Loop roles.
ROLE_K = 0       # contracted: in A and B, summed over
ROLE_M = 1       # free index of A (rows of D)
ROLE_N = 2       # free index of B (columns of D)
ROLE_NAMES = {ROLE_K: "K", ROLE_M: "M", ROLE_N: "N"}
#: The roles each operand's address uses.
OPERAND_ROLES = {"a": (ROLE_M, ROLE_K), "b": (ROLE_K, ROLE_N), "c": (ROLE_M, ROLE_N), "d": (ROLE_M, ROLE_N)}
OPERANDS = ("a", "b", "c", "d")
#: Which operand each of the address generator's offset slots holds, per role.
ROLE_SLOTS = {ROLE_K: ("a", "b"), ROLE_M: ("a", "c", "d"), ROLE_N: ("b", "c", "d")}
SLOTS = 3

EXTENT_BITS = 16
MAX_EXTENT = (1 << EXTENT_BITS) - 1
ACC_BYTES = 4    # C and D elements: int32

#: Descriptor layout in words: flags, four base byte addresses, then 5 words per loop.
DESC_FLAGS, DESC_BASE_A, DESC_BASE_B, DESC_BASE_C, DESC_BASE_D = range(5)
DESC_LOOPS = 5
LOOP_WORDS = 5   # extent | role << 16, stride_a, stride_b, stride_c, stride_d
FLAG_ACCUMULATE = 1 << 0
#: Start only after every earlier descriptor has completed (its D written): needed when this descriptor
#: reads what an earlier one writes. Without it, a descriptor's loads may overlap the previous write-back.
FLAG_FENCE = 1 << 1
ROLE_SHIFT = 16
#: Each queue slot of the descriptor memory is this many words (room for up to 11 loops).
DESC_SLOT_WORDS = 64


def desc_words(loops: int) -> int:
    return DESC_LOOPS + LOOP_WORDS * loops


class EngineStatus(enum.IntEnum):
    """Error codes of a rejected descriptor. When several apply, the lowest code is reported."""
    OK = 0
    ZERO_EXTENT = 1     # a loop has extent 0
    BAD_ROLE = 2        # a loop with extent > 1 has role 3
    MISALIGNED = 3      # a base address is not a multiple of its operand's element size
    STRIDE_RANGE = 4    # a used stride of a loop with extent > 1 reaches ±2^address_bits (overflows)
    A_RANGE = 5         # an element of A lies outside tensor memory
    B_RANGE = 6
    C_RANGE = 7
    D_RANGE = 8


#: Bits of the `status` register.
STATUS_BUSY = 1 << 0
STATUS_ERROR = 1 << 1
STATUS_QUEUE_FULL = 1 << 2
#: Bits of the `control` register (write 1 to act).
CONTROL_RESET = 1 << 0          # abort everything, flush the queue, clear the error
CONTROL_CLEAR_COUNTERS = 1 << 1


def engine_registers():
    """The engine's register bank, in address order (memory_map.Register objects)."""
    from .memory_map import Register
    return (
        Register("submit", "rw", "Write any value: enqueue the descriptor in slot submitted % queue."),
        Register("control", "rw", "Bit 0: abort, flush the queue and clear the error; bit 1: clear counters."),
        Register("status", "ro", "Bit 0 busy, bit 1 error (engine halted), bit 2 queue full."),
        Register("error_code", "ro", "EngineStatus of the rejected descriptor (0 when none)."),
        Register("error_index", "ro", "Sequence number (submission order from 0) of the rejected descriptor."),
        Register("submitted", "ro", "Descriptors accepted into the queue since reset (wrapping)."),
        Register("completed", "ro", "Descriptors completed since reset (wrapping)."),
        Register("queue_count", "ro", "Descriptors waiting in the queue (not yet started)."),
        Register("busy_cycles_lo", "ro", "Cycles with work in flight, low word; reading it latches the high word."),
        Register("busy_cycles_hi", "ro", "High word of busy_cycles as latched by the last low-word read."),
        Register("mac_count_lo", "ro", "Useful multiply-accumulates (masked cells excluded), low word; latches hi."),
        Register("mac_count_hi", "ro", "High word of mac_count as latched by the last low-word read."),
        Register("array_cycles", "ro", "Cycles the array was fed a k-step (wrapping)."),
        Register("stall_operand", "ro", "Busy cycles the array waited for operands to be loaded (wrapping)."),
        Register("stall_drain", "ro", "Busy cycles the array waited for the drain/write-back (wrapping)."),
        Register("stall_bus", "ro", "Cycles an engine memory request waited for the memory port (wrapping)."),
    )
