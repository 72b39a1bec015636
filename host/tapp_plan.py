"""The planning half of the TAPP API (host/tapp.py): label roles, the tiling planner with its traffic model,
and the descriptors of one block. Pure functions of shapes and layouts — no device traffic here.

Label roles (a label is a TAPP index; repeated labels within one tensor are one label whose stride is the
sum of the repeated modes' strides — a diagonal, read or written in place by the address generator):

| role | label is in | runs as |
| --- | --- | --- |
| H (batch/Hadamard) | A, B and D | a host loop: one descriptor per index, base addresses shifted |
| M (free in A) | A and D | engine loop of role M (strides of A, C, D) |
| N (free in B) | B and D | engine loop of role N (strides of B, C, D) |
| K (contracted) | A and B | engine loop of role K (strides of A, B) |
| K, reduced in A | A only | engine loop of role K with B's stride 0: Σ_r A[..r..]·B = (Σ_r A)·B |
| K, reduced in B | B only | engine loop of role K with A's stride 0 |

Blocking: every label l gets a block extent b_l (1 ≤ b_l ≤ min(e_l, 65535)). A block of the iteration
space is a box of those extents; host operands are packed per block into tensor-memory buffers, resident
operands are addressed in place. Loop order of the blocks: H, then M and N (either order), then K
innermost, so a D block stays in tensor memory (accumulating through C = D) across its whole K loop.
"""

import dataclasses
import itertools
import math

from . import contraction_model as cm
from .rtl import contraction_format as cf
from .rtl.link_format import CRC_BYTES, REQUEST_HEADER_BYTES, RESPONSE_HEADER_BYTES, WORD_BYTES

H, M, N, K = "H", "M", "N", "K"
ROLE_TEXT = {H: "batch (Hadamard)", M: "free in A", N: "free in B", K: "contracted"}
ENGINE_ROLE = {M: cf.ROLE_M, N: cf.ROLE_N, K: cf.ROLE_K}
#: Bytes a descriptor costs on the link: its 256-byte slot write plus about six register transactions
#: (status, submitted, submit, and the polls of wait()).
DESC_LINK_BYTES = cf.DESC_SLOT_WORDS * WORD_BYTES + REQUEST_HEADER_BYTES + CRC_BYTES + RESPONSE_HEADER_BYTES \
    + 6 * (REQUEST_HEADER_BYTES + RESPONSE_HEADER_BYTES + WORD_BYTES + CRC_BYTES)
ALIGN = 8            # buffers start on the engine's 64-bit load-port words


@dataclasses.dataclass
class Label:
    name: object
    extent: int
    role: str                       # H, M, N or K
    reduced: str | None = None      # "a" or "b" for a K label present in only that input

    @property
    def text(self):
        if self.reduced:
            return f"reduced in {self.reduced.upper()} only"
        return ROLE_TEXT[self.role]


def unique(idx):
    """Labels of one tensor in first-occurrence order, each once."""
    return tuple(dict.fromkeys(idx))


def analyze(idx_a, ext_a, idx_b, ext_b, idx_d):
    """Label objects, in the order: D's labels, then A's remaining, then B's remaining. Extents must
    already be consistent (tapp.py checks that first)."""
    extent = {}
    for idx, ext in ((idx_a, ext_a), (idx_b, ext_b)):
        for lab, e in zip(idx, ext):
            extent[lab] = e
    in_a, in_b, in_d = set(idx_a), set(idx_b), set(idx_d)
    out = []
    for lab in unique(tuple(idx_d) + tuple(idx_a) + tuple(idx_b)):
        a, b, d = lab in in_a, lab in in_b, lab in in_d
        if a and b:
            role, red = (H if d else K), None
        elif a:
            role, red = (M, None) if d else (K, "a")
        else:
            role, red = (N, None) if d else (K, "b")
        out.append(Label(lab, extent[lab], role, red))
    return out


def unique_strides(idx, strides):
    """{label: summed stride} — a repeated label's modes add up (the diagonal)."""
    out = {}
    for lab, s in zip(idx, strides):
        out[lab] = out.get(lab, 0) + s
    return out


# -- layouts and blocks -----------------------------------------------------------------------------------

@dataclasses.dataclass
class OpLayout:
    """Where an operand's block lives in tensor memory: byte address of the block's first element, element
    size and the element stride of each of its labels (labels it lacks have stride 0)."""
    base: int
    elem: int
    strides: dict

    def stride(self, label):
        return self.strides.get(label, 0)


@dataclasses.dataclass
class Blocking:
    block: dict                     # label name → block extent
    order: str                      # "MN": M blocks outer, N inner; or "NM"
    counts: dict                    # role → number of blocks
    traffic: dict                   # operand → payload bytes over the link; "desc" → descriptor bytes
    buffer_bytes: int               # tensor memory the host buffers take
    descriptors: int
    cycles: int                     # modeled engine cycles
    wire_bytes: int = 0             # traffic with the link's framing (headers, CRCs) counted
    candidates: int = 1             # how many fitting candidates were ranked

    @property
    def blocks(self):
        return math.prod(self.counts.values())

    @property
    def link_bytes(self):
        return sum(self.traffic.values())


def block_ranges(labels, block):
    """Yield, per block of the iteration space, {label: (start, extent)} — H outermost, then as given."""
    axes = []
    for lab in labels:
        b = block[lab.name]
        axes.append([(lab.name, s, min(b, lab.extent - s)) for s in range(0, lab.extent, b)])
    for combo in itertools.product(*axes):
        yield {name: (s, e) for name, s, e in combo}


def _sizes(e):
    """Candidate block extents for a label of extent e: e itself, powers of two and e / 2^p rounded up."""
    e_cap = min(e, cf.MAX_EXTENT)
    out = {e_cap}
    p = 1
    while p < e_cap:
        out.add(p)
        out.add(-(-e // p) if -(-e // p) <= e_cap else e_cap)
        p *= 2
    return sorted(out)


def _role_candidates(labs):
    """Block shapes for one role: labels listed innermost first; inner labels whole, one label cut,
    outer labels 1. Returns [(blockdict, product)] from large to small, deduplicated."""
    if not labs:
        return [({}, 1)]
    seen, out = set(), []
    for j, cut in enumerate(labs):
        for b in _sizes(cut.extent):
            blk = {}
            for i, lab in enumerate(labs):
                blk[lab.name] = min(lab.extent, cf.MAX_EXTENT) if i < j else (b if i == j else 1)
            key = tuple(blk.values())
            if key not in seen:
                seen.add(key)
                out.append((blk, math.prod(key)))
    out.sort(key=lambda t: -t[1])
    return out


def slot_counts(counts):
    """Buffer slots per host operand: two (double buffering) when it has more than one distinct block,
    else one — e.g. A whole in M and K is uploaded once and stays for every N block."""
    distinct = {"a": counts[H] * counts[M] * counts[K], "b": counts[H] * counts[N] * counts[K],
                "d": counts[H] * counts[M] * counts[N]}
    return {op: 2 if n > 1 else 1 for op, n in distinct.items()}


def _pad(n):
    return -(-n // ALIGN) * ALIGN


class Model:
    """Traffic and cycle model of one contraction on one engine configuration."""

    def __init__(self, labels, op_labels, elem, host, engine, max_transfer):
        self.labels = labels
        self.op_labels = op_labels          # operand → set of label names ("a", "b", "c", "d")
        self.elem = elem                    # operand → bytes per element
        self.host = host                    # operand → True if it must move over the link
        self.rows, self.cols = engine.rows, engine.cols
        self.tile_m, self.tile_n, self.chunk_k = engine.tile_m, engine.tile_n, engine.chunk_k
        self.max_transfer = max_transfer
        self.ext = {lab.name: lab.extent for lab in labels}

    def op_bytes(self, op, block=None):
        ext = block if block is not None else self.ext
        return math.prod(ext[n] for n in self.op_labels[op]) * self.elem[op]

    def wire(self, payload, transfers=None):
        """Link bytes for `payload` bytes moved in max_transfer chunks (headers and CRCs counted)."""
        chunks = transfers if transfers is not None else -(-payload // self.max_transfer)
        return payload + chunks * (REQUEST_HEADER_BYTES + CRC_BYTES + RESPONSE_HEADER_BYTES)

    def descriptor_cycles(self, m, n, k, accumulate):
        """Engine cycles of one descriptor of flattened sizes m×n×k: the larger of the array's k-steps
        (padded to full R×C passes, short K chunks padded to R) and the element-serial D write-back (two
        words per element when C or an earlier chunk is read), plus the first panel load."""
        r, c = self.rows, self.cols
        chunks = max(1, -(-k // self.chunk_k))
        k_steps = sum(max(r, min(self.chunk_k, k - i * self.chunk_k)) for i in range(chunks)) if k else r
        compute = -(-m // r) * -(-n // c) * k_steps
        writeback = m * n * (chunks + (1 if accumulate else 0))
        first_load = (min(m, self.tile_m) + min(n, self.tile_n)) * min(k, self.chunk_k) // 8
        return max(compute, writeback) + first_load + 32

    def evaluate(self, block, order, accumulate):
        labs = self.labels
        nb = {lab.name: -(-lab.extent // block[lab.name]) if lab.extent else 0 for lab in labs}
        counts = {role: math.prod(nb[lab.name] for lab in labs if lab.role == role) for role in (H, M, N, K)}
        full = {op: self.op_bytes(op) for op in self.op_labels}
        traffic = {}
        if counts[K] == 1:
            reuse_a, reuse_b = (True, False) if order == "MN" else (False, True)
        else:
            reuse_a = reuse_b = False
        if self.host["a"]:
            traffic["a"] = full["a"] * (1 if reuse_a else counts[N])
        if self.host["b"]:
            traffic["b"] = full["b"] * (1 if reuse_b else counts[M])
        if self.host.get("c"):
            traffic["c"] = full["c"]
        if self.host["d"]:
            traffic["d"] = full["d"]
        h_points = math.prod(lab.extent for lab in labs if lab.role == H)
        descriptors = h_points * counts[M] * counts[N] * counts[K]
        traffic["desc"] = descriptors * DESC_LINK_BYTES
        # Cycles: every descriptor of a full block; partial edge blocks are counted as full (an upper bound).
        size = {role: math.prod(block[lab.name] for lab in labs if lab.role == role) for role in (M, N, K)}
        per = self.descriptor_cycles(size[M], size[N], size[K], accumulate or counts[K] > 1)
        cycles = descriptors * per
        slots = slot_counts(counts)
        buf = 0
        for op in ("a", "b"):
            if self.host[op]:
                buf += slots[op] * _pad(self.op_bytes(op, block))
        if self.host["d"]:
            buf += slots["d"] * _pad(self.op_bytes("d", block))
        elif self.host.get("c"):
            buf += slots["d"] * _pad(self.op_bytes("c", block))
        payload = sum(v for k, v in traffic.items() if k != "desc")
        transfers = sum(-(-v // self.max_transfer) for k, v in traffic.items() if k != "desc")
        wire = self.wire(payload, transfers) + traffic["desc"]
        return Blocking(dict(block), order, counts, traffic, buf, descriptors, cycles, wire)

    @staticmethod
    def seconds(blk: Blocking, baud, clock_hz):
        """(link seconds, engine seconds) of a blocking: 10 bits per byte on the line."""
        return blk.wire_bytes * 10 / baud, blk.cycles / clock_hz


def plan_blocks(model: Model, budget, accumulate, baud, clock_hz):
    """The blocking with the least modeled time whose buffers fit `budget` bytes; None if even the smallest
    block does not fit. Fast path: one block when everything fits."""
    labs = model.labels
    full = {lab.name: min(lab.extent, cf.MAX_EXTENT) for lab in labs}
    whole = model.evaluate(full, "MN", accumulate)
    if whole.buffer_bytes <= budget and whole.blocks == 1:
        return whole

    # Labels of a role are cut innermost-last in D's (or A's) label order, so the cut is an outer mode.
    cands = {role: _role_candidates([lab for lab in labs if lab.role == role][::-1]) for role in (H, M, N, K)}
    h_small = {lab.name: 1 for lab in labs if lab.role == H}
    best, ranked = None, 0
    for h_blk, _ in [(h_small, 1)] + cands[H][:1]:
        for m_blk, _ in cands[M]:
            for n_blk, _ in cands[N]:
                for k_blk, _ in cands[K]:          # largest K first: the first that fits is the best K
                    block = {**h_blk, **m_blk, **n_blk, **k_blk}
                    fits = None
                    for order in ("MN", "NM"):
                        cand = model.evaluate(block, order, accumulate)
                        if cand.buffer_bytes > budget:
                            continue
                        ranked += 1
                        link, dev = model.seconds(cand, baud, clock_hz)
                        key = (link + dev, cand.blocks)
                        if best is None or key < best[0]:
                            best = (key, cand)
                        fits = True
                    if fits:
                        break
    if best is None:
        return None
    best[1].candidates = ranked
    return best[1]


# -- descriptors of one block ----------------------------------------------------------------------------

@dataclasses.dataclass
class _Loop:
    extent: int
    role: str
    strides: dict                  # operand → element stride
    names: tuple = ()              # the labels it stands for (several when folded)


def _order_key(lp):
    """Outer loops first. M and N: by the stride of the input they stream from (A, B), so the innermost
    is that input's most contiguous mode. K: by the smaller of A's and B's strides, so a K label that is
    contiguous in either input ends innermost and the engine loads that panel in runs along K."""
    if lp.role == K:
        sa, sb = abs(lp.strides.get("a", 0)), abs(lp.strides.get("b", 0))
        small = min(s for s in (sa, sb) if s) if (sa or sb) else 0
        return (-small, -max(sa, sb))
    op = "a" if lp.role == M else "b"
    return (-abs(lp.strides.get(op, 0)), -abs(lp.strides.get("d", 0)))


def _fold(loops):
    """Merge a loop into the next (inner) loop of the same role when every operand's strides say they are
    one contiguous mode (stride_outer = stride_inner · extent_inner) and the extent stays in range."""
    out = []
    for lp in loops:
        if out:
            prev = out[-1]
            ops = {M: "acd", N: "bcd", K: "ab"}[lp.role]
            if prev.role == lp.role and prev.extent * lp.extent <= cf.MAX_EXTENT and all(
                    prev.strides.get(o, 0) == lp.strides.get(o, 0) * lp.extent for o in ops):
                out[-1] = _Loop(prev.extent * lp.extent, lp.role, dict(lp.strides), prev.names + lp.names)
                continue
        out.append(lp)
    return out


def engine_loops(labels, ranges, layouts, max_loops):
    """Engine loops (sorted, folded) for a block and the loops peeled to the host because the engine has
    only `max_loops`: (device_loops, host_loops). H labels are always host loops."""
    dev_loops, host_loops = [], []
    for lab in labels:
        ext = ranges[lab.name][1]
        strides = {op: lay.stride(lab.name) for op, lay in layouts.items() if lay is not None}
        if lab.reduced == "a":
            strides["b"] = 0
        elif lab.reduced == "b":
            strides["a"] = 0
        lp = _Loop(ext, lab.role, strides, (lab.name,))
        if lab.role == H:
            host_loops.append(lp)
        elif ext > 1:
            dev_loops.append(lp)
    by_role = [sorted([lp for lp in dev_loops if lp.role == r], key=_order_key) for r in (M, N, K)]
    dev_loops = [lp for group in by_role for lp in _fold(group)]
    while len(dev_loops) > max_loops:               # peel the smallest loop (fewest extra descriptors)
        smallest = min(range(len(dev_loops)), key=lambda i: (dev_loops[i].extent, dev_loops[i].role == K))
        host_loops.append(dev_loops.pop(smallest))
    return dev_loops, host_loops


def block_descriptors(dev_loops, host_loops, layouts, c_first, d_is_c):
    """Descriptors of one block: one per point of the host loops. `layouts` has "a", "b", "d"; `c_first`
    is the OpLayout C is read from in the first K step (None: no C), later K steps (peeled K loops)
    accumulate onto D. Yields (Descriptor, reads_earlier_d)."""
    def loops_with(c_layout):
        out = []
        for lp in dev_loops:
            s = lp.strides
            if lp.role == K:
                out.append(cm.Loop(lp.extent, cf.ROLE_K, stride_a=s.get("a", 0), stride_b=s.get("b", 0)))
            else:
                sc = s.get("d", 0) if c_layout == "d" else (s.get("c", 0) if c_layout else 0)
                out.append(cm.Loop(lp.extent, ENGINE_ROLE[lp.role], stride_a=s.get("a", 0) if lp.role == M else 0,
                                   stride_b=s.get("b", 0) if lp.role == N else 0, stride_c=sc,
                                   stride_d=s.get("d", 0)))
        return tuple(out)

    with_c = loops_with("c" if c_first is not None and not d_is_c else ("d" if c_first is not None else None))
    with_d = loops_with("d")
    k_host = [i for i, lp in enumerate(host_loops) if lp.role == K]
    for point in itertools.product(*[range(lp.extent) for lp in host_loops]):
        base = {}
        for op in ("a", "b", "d"):
            lay = layouts[op]
            base[op] = lay.base + lay.elem * sum(i * lp.strides.get(op, 0) for i, lp in zip(point, host_loops))
        first_k = all(point[i] == 0 for i in k_host)
        if first_k and c_first is not None:
            # C at this host-loop point, with its own strides (the K host loops are all 0 here)
            base_c = base["d"] if d_is_c else c_first.base + c_first.elem * sum(
                i * lp.strides.get("c", 0) for i, lp in zip(point, host_loops) if lp.role != K)
            yield cm.Descriptor(with_c, base["a"], base["b"], base_c, base["d"], accumulate=True), d_is_c
        elif first_k:
            yield cm.Descriptor(with_d, base["a"], base["b"], 0, base["d"], accumulate=False), False
        else:
            yield cm.Descriptor(with_d, base["a"], base["b"], base["d"], base["d"], accumulate=True), True


def loops_text(dev_loops, host_loops):
    """Lines describing a block's engine loops (outermost first) and its host loops."""
    ops = {M: "ACD", N: "BCD", K: "AB"}
    lines = []
    for lp in dev_loops:
        names = "·".join(map(str, lp.names))
        strides = ", ".join(f"{o} {lp.strides.get(o.lower(), 0)}" for o in ops[lp.role] if o.lower() in lp.strides
                            or o in "AB")
        folded = " (folded: contiguous in every operand)" if len(lp.names) > 1 else ""
        lines.append(f"engine loop {lp.role} {names} extent {lp.extent}{folded}: strides {strides}")
    for lp in host_loops:
        why = "batch label: one descriptor per index" if lp.role == H else \
            "peeled to the host (more loops than the engine has)"
        lines.append(f"host loop {'·'.join(map(str, lp.names))} extent {lp.extent}: {why}")
    return lines
