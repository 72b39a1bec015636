"""A PyTorch DDP communication hook with the NIC's all-reduce numerics (needs `tensornic[torch]`).

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from tensornic.torch import allreduce_hook

    model = DDP(net)
    model.register_comm_hook(None, allreduce_hook(rs_codec="bf16", ag_codec="mxint8"))

`allreduce_hook` runs the NIC's ring all-reduce (docs/allreduce.md) over torch.distributed point-to-point
operations: rank r sends to r+1 and receives from r−1, and what travels is the compressed wire payload (uint8
tensors: FP32 bytes, BF16 halves, or MXINT8 blocks of a scale byte and k element bytes). Every hop decodes,
adds in FP32 with `tensornic.formats.fp32_add` (round to nearest even, canonical NaN) and re-encodes; the
all-gather forwards the encoded totals unchanged and every rank, the chunk's owner included, adopts the decoded
value, so the replicas stay bit-identical. The sum is bit-identical to `tensornic.emulator.allreduce` for the
same inputs; the hook returns it divided by the world size, as DDP expects.

With `device=` each rank's NIC does the all-reduce instead: the hook hands it the bucket as a float32 numpy
vector (`device.allreduce(x, rs_codec=..., ag_codec=...)`) and divides what comes back.

Codec work runs on the CPU (the formats are numpy golden models); a CUDA bucket is copied to the host and the
result copied back. The payloads travel on the CPU with gloo and on the bucket's device with NCCL.

This module is `tensornic.torch`: it imports PyTorch as the absolute `torch`, never relative to the package.
"""

import numpy as np
import torch
import torch.distributed as dist

from tensornic import emulator, formats
from tensornic.errors import TensornicError
from tensornic.rtl.format_constants import MX_BLOCK_SIZES, mx_block_bytes

__all__ = ["allreduce_hook", "RingAllreduceHook", "ring_allreduce", "encode", "decode", "wire_bytes",
           "ring_bytes_per_rank", "TorchHookError", "UnsupportedBucket", "WorldSizeMismatch", "RankMismatch",
           "CODECS"]

#: Every codec the hook accepts: the NIC's, then the emulator-only comparison format (truncating MXINT8).
CODECS = emulator.CODECS + emulator.COMPARISON_CODECS


class TorchHookError(TensornicError):
    """The DDP communication hook cannot all-reduce this bucket; the message says why and what to do."""


class UnsupportedBucket(TorchHookError, TypeError):
    """The bucket's dtype is not float32 (the NIC adds FP32 only)."""


class WorldSizeMismatch(TorchHookError, ValueError):
    """The NIC device's ring has a different number of ranks than the process group."""


class RankMismatch(TorchHookError, ValueError):
    """The NIC device attached to this process sits at another ring position than the process's rank."""


def _check_codec(name, codec, allowed=CODECS):
    if codec in CODECS and codec not in allowed:
        raise ValueError(f"{name}={codec!r} is a comparison format of the models only; a NIC device implements "
                         f"{', '.join(emulator.CODECS)}: drop device= to compare it, or choose one of those")
    if codec not in allowed:
        extra = [c for c in allowed if c not in emulator.CODECS]
        raise ValueError(f"{name}={codec!r}: the NIC's codecs are {', '.join(emulator.CODECS)}"
                         + (f" (and, for comparison only, {', '.join(extra)})" if extra else ""))


def _check_block(mx_block):
    if isinstance(mx_block, bool) or not isinstance(mx_block, int) or mx_block not in MX_BLOCK_SIZES:
        raise ValueError(f"mx_block must be one of {MX_BLOCK_SIZES}, not {mx_block!r}")


# --- the wire payloads ---------------------------------------------------------------------------------------

def wire_bytes(count: int, codec: str, mx_block: int = 32) -> int:
    """Bytes that `count` values (a multiple of mx_block for the MXINT8 codecs) take on the wire."""
    _check_codec("codec", codec)
    if codec == "fp32":
        return 4 * count
    if codec == "bf16":
        return 2 * count
    if count % mx_block:
        raise ValueError(f"{count} values are not a whole number of {mx_block}-value MXINT8 blocks")
    return count // mx_block * mx_block_bytes(mx_block)


def encode(values: np.ndarray, codec: str, mx_block: int = 32) -> np.ndarray:
    """float32 values → their wire bytes (uint8): little-endian FP32 or BF16, or MXINT8 blocks in the
    `formats.mxint8_to_wire` layout (scale byte, then the block's elements)."""
    if codec == "fp32":
        return np.ascontiguousarray(values, dtype="<f4").view(np.uint8)
    if codec == "bf16":
        return formats.bf16_encode(values).astype("<u2").view(np.uint8)
    if codec in ("mxint8", "mxint8-trunc"):
        rounding = "nearest" if codec == "mxint8" else "truncate"
        scales, elements = formats.mxint8_encode(values, mx_block, rounding=rounding)
        return np.frombuffer(bytearray(formats.mxint8_to_wire(scales, elements, mx_block)), dtype=np.uint8)
    _check_codec("codec", codec)


def decode(payload: np.ndarray, codec: str, mx_block: int = 32) -> np.ndarray:
    """Wire bytes (uint8) → float32 values: the inverse of `encode`, so decode(encode(x)) is
    `emulator.codec_round_trip(x)` bit for bit."""
    payload = np.ascontiguousarray(payload, dtype=np.uint8)
    if codec == "fp32":
        return payload.view("<f4").astype(np.float32)
    if codec == "bf16":
        return formats.bf16_decode(payload.view("<u2").astype(np.uint16))
    if codec in ("mxint8", "mxint8-trunc"):
        return formats.mxint8_decode(*formats.mxint8_from_wire(payload.tobytes(), mx_block), mx_block)
    _check_codec("codec", codec)


def ring_bytes_per_rank(length: int, world_size: int, rs_codec: str, ag_codec: str, mx_block: int = 32) -> int:
    """Bytes each rank sends for one all-reduce of `length` values: n−1 reduce-scatter chunks and n−1
    all-gather chunks of the padded vector (a multiple of n·mx_block), each in its phase's wire format."""
    n = world_size
    chunk = -(-length // (n * mx_block)) * mx_block
    return (n - 1) * (wire_bytes(chunk, rs_codec, mx_block) + wire_bytes(chunk, ag_codec, mx_block))


# --- the ring over torch.distributed -------------------------------------------------------------------------

def _peer(group, rank):
    """The global rank of `rank` in `group` (point-to-point ops address global ranks)."""
    if group is None or group is dist.GroupMember.WORLD:
        return rank
    return dist.get_global_rank(group, rank)


def _wire_device(group, like: torch.device) -> torch.device:
    """Where payloads travel: the CPU unless the group's only backend is NCCL (which needs CUDA tensors)."""
    if like.type == "cpu":
        return like
    backend = str(dist.get_backend(group)).lower()
    return like if backend == "nccl" else torch.device("cpu")


def ring_allreduce(x, rs_codec="fp32", ag_codec="fp32", mx_block=32, group=None, wire_device=None):
    """The NIC's ring all-reduce of this rank's float32 vector `x` (1-D numpy array) with the other ranks of
    `group`, over point-to-point operations. Returns (sum, bytes_sent): the float32 sum, identical on every
    rank and bit-identical to `emulator.allreduce(...)[rank]`, and the payload bytes this rank sent."""
    _check_codec("rs_codec", rs_codec)
    _check_codec("ag_codec", ag_codec)
    _check_block(mx_block)
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 1:
        raise TypeError(f"x must be a 1-D float32 numpy array, not {getattr(x, 'dtype', type(x).__name__)} "
                        f"of shape {getattr(x, 'shape', '?')}")
    n = dist.get_world_size(group)
    rank = dist.get_rank(group)
    wire_device = torch.device("cpu") if wire_device is None else torch.device(wire_device)
    length = x.size
    padded = -(-length // (n * mx_block)) * (n * mx_block)
    size = padded // n
    data = np.zeros(padded, dtype=np.float32)
    data[:length] = x

    def chunk(c):
        return slice(c * size, (c + 1) * size)

    send_to, receive_from = _peer(group, (rank + 1) % n), _peer(group, (rank - 1) % n)
    sent = 0

    def exchange(payload, nbytes):
        nonlocal sent
        outgoing = torch.from_numpy(np.ascontiguousarray(payload)).to(wire_device)
        incoming = torch.empty(nbytes, dtype=torch.uint8, device=wire_device)
        requests = dist.batch_isend_irecv([dist.P2POp(dist.isend, outgoing, send_to, group),
                                           dist.P2POp(dist.irecv, incoming, receive_from, group)])
        for request in requests:
            request.wait()
        sent += outgoing.numel()
        return incoming.cpu().numpy()

    # Reduce-scatter: at step s this rank forwards its partial of chunk r−s+1 and adds its own values to the
    # partial of chunk r−s it receives; after n−1 steps it holds the total of chunk r+1.
    partial = data[chunk(rank)]
    rs_bytes = wire_bytes(size, rs_codec, mx_block)
    for step in range(1, n):
        received = exchange(encode(partial, rs_codec, mx_block), rs_bytes)
        partial = formats.fp32_add(decode(received, rs_codec, mx_block), data[chunk((rank - step) % n)])

    # All-gather: the encoded totals go round unchanged; every rank (the owner too) keeps the decoded value.
    result = np.empty(padded, dtype=np.float32)
    payload = encode(partial, ag_codec, mx_block)
    result[chunk((rank + 1) % n)] = decode(payload, ag_codec, mx_block)
    ag_bytes = wire_bytes(size, ag_codec, mx_block)
    for step in range(1, n):
        payload = exchange(payload, ag_bytes)
        result[chunk((rank + 1 - step) % n)] = decode(payload, ag_codec, mx_block)
    return result[:length].copy(), sent


# --- the DDP communication hook ------------------------------------------------------------------------------

class RingAllreduceHook:
    """A DDP communication hook (`hook(state, bucket) -> Future[Tensor]`) with the NIC's numerics.

    `state` is the process group to reduce over (None: the default group), as for DDP's built-in hooks.
    Counters: `calls` (buckets reduced), `bytes_sent` (payload bytes this rank sent, cumulative; 0 with a
    device, whose traffic is the NIC's), `values` (gradient values reduced).
    """

    def __init__(self, rs_codec="fp32", ag_codec="fp32", mx_block=32, device=None):
        if device is None:
            _check_codec("rs_codec", rs_codec)
            _check_codec("ag_codec", ag_codec)
        else:
            # The comparison-only truncating format exists in the models, not in the gateware.
            _check_codec("rs_codec", rs_codec, emulator.CODECS)
            _check_codec("ag_codec", ag_codec, emulator.CODECS)
            if not callable(getattr(device, "allreduce", None)):
                raise TypeError(f"device= must have an allreduce(x, rs_codec=, ag_codec=) method (a tensornic "
                                f"device's all-reduce interface); {type(device).__name__} has none")
            block = getattr(device, "mx_block", mx_block)
            if block != mx_block:
                raise ValueError(f"the device uses MXINT8 blocks of {block} values, the hook {mx_block}: "
                                 f"pass mx_block={block}")
        _check_block(mx_block)
        self.rs_codec, self.ag_codec, self.mx_block, self.device = rs_codec, ag_codec, mx_block, device
        # DDP logs a hook's name and qualified name when registering it (callable objects have neither).
        self.__name__ = "allreduce_hook"
        self.__qualname__ = f"tensornic.torch.allreduce_hook({rs_codec}, {ag_codec}, {mx_block})"
        self.calls = 0
        self.bytes_sent = 0
        self.values = 0

    def __repr__(self):
        where = f", device={self.device!r}" if self.device is not None else ""
        return (f"allreduce_hook(rs_codec={self.rs_codec!r}, ag_codec={self.ag_codec!r}, "
                f"mx_block={self.mx_block}{where})")

    def __call__(self, state, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        group = state if isinstance(state, dist.ProcessGroup) else None
        if state is not None and group is None:
            raise TypeError(f"the hook's state must be a ProcessGroup or None (the default group), not "
                            f"{type(state).__name__}: register it with model.register_comm_hook(None, hook)")
        buffer = bucket.buffer()
        self._check_dtype(buffer, bucket)
        if not dist.is_initialized():
            raise TorchHookError("torch.distributed is not initialized: call dist.init_process_group(...) "
                                 "before training with the hook")
        n = dist.get_world_size(group)
        x = buffer.detach().to("cpu").reshape(-1).numpy().copy()
        if self.device is None:
            total, sent = ring_allreduce(x, self.rs_codec, self.ag_codec, self.mx_block, group,
                                         _wire_device(group, buffer.device))
            self.bytes_sent += sent
        else:
            total = self._on_device(x, group, n)
        self.calls += 1
        self.values += x.size
        averaged = torch.from_numpy(total).div_(n).view(buffer.shape).to(buffer.device)
        future = torch.futures.Future(devices=[buffer.device]) if buffer.device.type != "cpu" \
            else torch.futures.Future()
        future.set_result(averaged)
        return future

    @staticmethod
    def _check_dtype(buffer, bucket):
        if buffer.dtype == torch.float32:
            return
        index = bucket.index() if hasattr(bucket, "index") else "?"
        dtype = str(buffer.dtype).removeprefix("torch.")
        kind = "complex" if buffer.dtype.is_complex else "floating-point" if buffer.dtype.is_floating_point \
            else "integer"
        raise UnsupportedBucket(
            f"gradient bucket {index} holds {dtype} ({kind}) values; the NIC adds float32 only. Keep the "
            "parameters in float32 (model.float(); autocast keeps them there), or leave this model on DDP's "
            "default all-reduce")

    def _on_device(self, x, group, n):
        device = self.device
        ring = getattr(device, "world_size", None)
        if ring is not None and ring != n:
            raise WorldSizeMismatch(f"the NIC device's ring has {ring} ranks but the process group has {n}: "
                                    "start one process per ring node (world_size = the ring's size)")
        position = getattr(device, "rank", None)
        rank = dist.get_rank(group)
        if position is not None and position != rank:
            raise RankMismatch(f"process rank {rank} has the NIC device at ring position {position}: attach "
                               "each rank's own device (rank r ↔ ring node r)")
        total = device.allreduce(x, rs_codec=self.rs_codec, ag_codec=self.ag_codec)
        if not isinstance(total, np.ndarray) or total.dtype != np.float32 or total.shape != x.shape:
            raise TypeError(f"{type(device).__name__}.allreduce must return a float32 array of shape {x.shape}, "
                            f"not {getattr(total, 'dtype', type(total).__name__)} of shape "
                            f"{getattr(total, 'shape', '?')}")
        return total


def allreduce_hook(rs_codec="fp32", ag_codec="fp32", mx_block=32, device=None) -> RingAllreduceHook:
    """A DDP communication hook that all-reduces each gradient bucket with the NIC's ring semantics.

    rs_codec, ag_codec: the wire codec of the reduce-scatter and of the all-gather phase: "fp32", "bf16",
    "mxint8" (the NIC's), or "mxint8-trunc" (truncating MXINT8, for comparison; not with a device).
    mx_block: MXINT8 block size (16 or 32); the vector is padded to a multiple of world_size · mx_block.
    device: this rank's NIC (an object with `allreduce(x, rs_codec=, ag_codec=)`, optionally `world_size`,
    `rank`, `mx_block`, checked against the process group); None runs the ring over torch.distributed.

    Register with `ddp_model.register_comm_hook(None, hook)` (or a process group instead of None).
    """
    return RingAllreduceHook(rs_codec, ag_codec, mx_block, device)
