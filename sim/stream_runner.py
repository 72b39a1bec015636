"""Bulk stream tests at native speed: an Amaranth component + sim/stream_driver.cpp, Verilated and cached.

cocotb crosses into Python every cycle (tens of kcycles/s); this driver runs the same kind of test — random
idle gaps on the input stream, random backpressure (and long stalls) on the output stream, a stream-rules
check on the output, nothing left in flight at the end — at millions of cycles per second. Python makes the
inputs with numpy, and compares the outputs with a model bit for bit.

    driver = StreamDriver(lambda: Fp32Adder(1), name="fp32_add", params={"lanes": 1})
    words = pack(driver.in_layout, {(0, "a"): a_bits, (0, "b"): b_bits})
    run = driver.run(words, expect=len(a_bits), seed=1, idle=0.2, stall=0.3)
    run.check()
    sums = unpack(driver.out_layout, run.outputs)[(0,)]

Any component with one input stream and one output stream works (port names given by `input` and
`output`); other inputs can be tied to constants with `statics`. The design-specific part of the C++ is a
generated header (stream_ports.h), so nothing is edited per design. Builds live under
~/.cache/tensornic/stream/<name>-<params hash>/ (see `verilator.build_dir_for`) and are reused while the
Verilog, the driver source, the arguments and the Verilator version are unchanged.
"""

import dataclasses
import itertools
import json
import os
import subprocess
import time
from importlib import resources

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data
from filelock import FileLock

from . import verilator as vl

__all__ = ["StreamDriver", "StreamRun", "leaf_fields", "pack", "unpack", "words_for"]


# --- payload bits <-> uint32 words ---------------------------------------------------------------------------

def words_for(bits: int) -> int:
    """32-bit words per payload of `bits` bits in the driver's files."""
    return max(1, (bits + 31) // 32)


def leaf_fields(shape) -> dict:
    """path → (offset, width, signed) of every leaf of a payload shape. A path is the tuple of struct keys
    and array indices from the top (e.g. `(0, "a")` for lane 0's `a`); a plain shape is the leaf `()`."""
    out = {}

    def walk(shape, offset, path):
        if isinstance(shape, data.Layout):
            for key, field in shape:
                walk(field.shape, offset + field.offset, path + (key,))
        else:
            cast = Shape.cast(shape)
            out[path] = (offset, cast.width, cast.signed)

    walk(shape, 0, ())
    return out


def pack(shape, values: dict, count: int | None = None) -> np.ndarray:
    """Payload words (uint32, shape (n, words)) from `values`: path → integer array (missing leaves are 0).
    Signed leaves take negative numbers (two's complement)."""
    fields = leaf_fields(shape)
    total = Shape.cast(shape).width
    unknown = set(values) - set(fields)
    if unknown:
        raise KeyError(f"no such payload fields: {sorted(unknown, key=str)}; the payload has {list(fields)}")
    arrays = {path: np.asarray(v).astype(np.int64).astype(np.uint64) for path, v in values.items()}
    n = count if count is not None else len(next(iter(arrays.values())))
    words = np.zeros((n, words_for(total)), dtype=np.uint64)
    for path, array in arrays.items():
        offset, width, _ = fields[path]
        if array.shape != (n,):
            raise ValueError(f"field {path}: {array.shape} values, expected ({n},)")
        mask = np.uint64((1 << width) - 1) if width < 64 else np.uint64(0xFFFF_FFFF_FFFF_FFFF)
        array = array & mask
        done = 0
        while done < width:
            word, bit = divmod(offset + done, 32)
            take = min(32 - bit, width - done)
            chunk = (array >> np.uint64(done)) & np.uint64((1 << take) - 1)
            words[:, word] |= chunk << np.uint64(bit)
            done += take
    return words.astype(np.uint32)


def unpack(shape, words: np.ndarray) -> dict:
    """path → int64 array of every leaf from payload words (the inverse of `pack`); signed leaves are
    sign-extended."""
    words = np.asarray(words, dtype=np.uint32).astype(np.uint64)
    out = {}
    for path, (offset, width, signed) in leaf_fields(shape).items():
        if width > 63:
            raise ValueError(f"field {path} is {width} bits wide; unpack handles up to 63")
        value = np.zeros(len(words), dtype=np.uint64)
        done = 0
        while done < width:
            word, bit = divmod(offset + done, 32)
            take = min(32 - bit, width - done)
            value |= ((words[:, word] >> np.uint64(bit)) & np.uint64((1 << take) - 1)) << np.uint64(done)
            done += take
        value = value.astype(np.int64)
        if signed:
            value = np.where(value >= (1 << (width - 1)), value - (1 << width), value)
        out[path] = value
    return out


# --- build ---------------------------------------------------------------------------------------------------

def _driver_source() -> str:
    return resources.files(__package__).joinpath("stream_driver.cpp").read_text()


def verilator_member(port: str) -> str:
    """The C++ member name Verilator gives a top-level port: an underscore that follows another is escaped
    as `__05F` (Amaranth's `i__valid` becomes `i___05Fvalid`)."""
    out = []
    for index, char in enumerate(port):
        out.append("__05F" if char == "_" and index and port[index - 1] == "_" else char)
    return "".join(out)


def _header(name, input, output, in_bits, out_bits, statics) -> str:
    member = verilator_member
    lines = [
        "// Generated by tensornic.sim.stream_runner: the design-specific half of stream_driver.cpp.",
        "#pragma once",
        f'#include "V{name}.h"',
        '#include "verilated.h"',
        f"using DUT = V{name};",
        f"#define IN_VALID {member(input + '__valid')}",
        f"#define IN_READY {member(input + '__ready')}",
        f"#define IN_PAYLOAD {member(input + '__payload')}",
        f"#define OUT_VALID {member(output + '__valid')}",
        f"#define OUT_READY {member(output + '__ready')}",
        f"#define OUT_PAYLOAD {member(output + '__payload')}",
        f"constexpr unsigned IN_BITS = {in_bits};",
        f"constexpr unsigned OUT_BITS = {out_bits};",
        f"constexpr unsigned IN_WORDS = {words_for(in_bits)};",
        f"constexpr unsigned OUT_WORDS = {words_for(out_bits)};",
        "static inline void set_static_inputs(DUT* top) {",
        "    (void)top;",
    ]
    for port, value in sorted(statics.items()):
        if not isinstance(value, int) or value < 0 or value >= 1 << 64:
            raise ValueError(f"static input {port} must be an integer in [0, 2**64), not {value!r}")
        lines.append(f"    top->{member(port)} = {value}ull;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _stream_layout(component, port):
    try:
        member = component.signature.members[port]
    except KeyError:
        raise ValueError(f"{type(component).__name__} has no port {port!r}") from None
    return member.signature.members["payload"].shape


class StreamDriver:
    """A component Verilated together with the native stream driver; see the module docstring."""

    def __init__(self, make_component, *, name: str, params: dict | None = None, input: str = "i",
                 output: str = "o", statics: dict | None = None, status=None):
        component = make_component()
        self.name = name
        self.in_layout = _stream_layout(component, input)
        self.out_layout = _stream_layout(component, output)
        self.in_bits = Shape.cast(self.in_layout).width
        self.out_bits = Shape.cast(self.out_layout).width
        statics = dict(statics or {})
        key = {**(params or {}), "__statics": statics, "__ports": [input, output]}
        self.build_dir = vl.build_dir_for("stream", name, key)
        self.build_dir.mkdir(parents=True, exist_ok=True)
        self.binary = self.build_dir / f"{name}-driver"
        with FileLock(str(self.build_dir / ".lock")):
            verilog = vl.to_verilog(component, name)
            source = self.build_dir / f"{name}.v"
            vl.write_if_changed(source, verilog)
            header = _header(name, input, output, self.in_bits, self.out_bits, statics)
            vl.write_if_changed(self.build_dir / "stream_ports.h", header)
            driver = self.build_dir / "stream_driver.cpp"
            vl.write_if_changed(driver, _driver_source())
            args = [vl.verilator_executable(), "--cc", "--exe", "--build", "-j", "2", "-Wall", *vl.lint_args(),
                    "-O3", "--x-assign", "fast", "--x-initial", "fast", "--top-module", name,
                    "--Mdir", str(self.build_dir / "obj"), "-o", str(self.binary),
                    "-CFLAGS", f"-O2 -I{self.build_dir}", str(source), str(driver)]
            vl.ensure_verilator_on_path()

            def build():
                if status:
                    status(f"building the stream driver for {name} with Verilator")
                log = self.build_dir / "build.log"
                with open(log, "w") as out:
                    result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, cwd=self.build_dir)
                if result.returncode != 0 or not self.binary.exists():
                    raise RuntimeError(f"Verilator could not build the stream driver for {name} "
                                       f"(log: {log}):\n{log.read_text()[-3000:]}")

            vl.cached_build(self.build_dir, [verilog, header, _driver_source(), args, vl.verilator_version()],
                            build)

    def run(self, inputs: np.ndarray, expect: int, *, seed: int = 1, idle: float = 0.0, stall: float = 0.0,
            long_stall: float = 0.0, drain: int = 200, max_cycles: int | None = None,
            timeout: float = 600.0) -> "StreamRun":
        """Drive `inputs` (uint32, shape (n, in_words)) through the design; collect up to `expect` outputs.
        Probabilities: `idle` — the source pauses before an item; `stall` — ready low in a cycle;
        `long_stall` — a 16..255-cycle stall starts."""
        inputs = np.ascontiguousarray(inputs, dtype=np.uint32)
        if inputs.ndim != 2 or inputs.shape[1] != words_for(self.in_bits):
            raise ValueError(f"inputs must have shape (n, {words_for(self.in_bits)}), not {inputs.shape}")
        run_dir = self.build_dir / f"run-{os.getpid()}-{next(_run_numbers)}"
        run_dir.mkdir()
        try:
            in_path, out_path = run_dir / "in.bin", run_dir / "out.bin"
            inputs.tofile(in_path)
            argv = [str(self.binary), "--in", str(in_path), "--out", str(out_path), "--expect", str(expect),
                    "--seed", str(seed), "--idle", repr(float(idle)), "--stall", repr(float(stall)),
                    "--long-stall", repr(float(long_stall)), "--drain", str(drain)]
            if max_cycles:
                argv += ["--max-cycles", str(max_cycles)]
            started = time.perf_counter()
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            seconds = time.perf_counter() - started
            if result.returncode != 0:
                raise RuntimeError(f"the stream driver for {self.name} failed ({result.returncode}): "
                                   f"{result.stderr.strip()}")
            summary = json.loads(result.stdout.strip().splitlines()[-1])
            outputs = np.fromfile(out_path, dtype=np.uint32).reshape(-1, words_for(self.out_bits))
        finally:
            for path in run_dir.iterdir():
                path.unlink()
            run_dir.rmdir()
        return StreamRun(outputs=outputs, seconds=seconds, **summary)


_run_numbers = itertools.count()


@dataclasses.dataclass
class StreamRun:
    """What one driver run saw. `outputs`: the payloads transferred on the output, in order."""
    outputs: np.ndarray
    cycles: int
    busy_cycles: int          # cycles until every input was taken and every expected output arrived
    inputs: int
    taken: int
    received: int
    expected: int
    extra: int                # outputs beyond `expected`, seen while draining: must be 0
    protocol_errors: int      # o.valid fell or o.payload changed before a transfer
    first_out_cycle: int
    last_out_cycle: int
    timed_out: bool
    first_error: str
    seconds: float = 0.0      # wall time of the driver process (file I/O included)

    def check(self):
        """Raise AssertionError unless every input was taken, exactly the expected outputs came out, and the
        output stream kept the stream rules."""
        problems = []
        if self.timed_out:
            problems.append(f"timed out after {self.cycles} cycles")
        if self.taken != self.inputs:
            problems.append(f"took {self.taken} of {self.inputs} inputs")
        if self.received != self.expected:
            problems.append(f"received {self.received} of {self.expected} outputs")
        if self.extra:
            problems.append(f"{self.extra} outputs beyond the expected ones (duplicates?)")
        if self.protocol_errors:
            problems.append(f"{self.protocol_errors} stream-rule violations, first: {self.first_error}")
        if problems:
            raise AssertionError("; ".join(problems))
        return self


# --- the cocotb counterpart: the same stream discipline, for protocol-level benches -------------------------

class CocotbStreamBench:
    """Inside a cocotb test: owns the clock, a source on the input stream (random idle gaps) and a sink on
    the output stream (random backpressure and occasional long stalls), and checks the output side of the
    stream rules on every cycle (valid stays up and the payload holds until the transfer).

    Payloads are plain integers (use `pack`/`unpack` with one row to build and read them)."""

    def __init__(self, dut, *, seed: int, input: str = "i", output: str = "o", clock_ns: int = 10):
        import random

        import cocotb
        from cocotb.clock import Clock

        self.dut = dut
        self.rng = random.Random(seed)
        self.valid_in = getattr(dut, f"{input}__valid")
        self.ready_in = getattr(dut, f"{input}__ready")
        self.payload_in = getattr(dut, f"{input}__payload")
        self.valid_out = getattr(dut, f"{output}__valid")
        self.ready_out = getattr(dut, f"{output}__ready")
        self.payload_out = getattr(dut, f"{output}__payload")
        self.gaps = 0.0              # probability of an idle cycle before each input
        self.backpressure = 0.0      # probability that ready is low in a cycle
        self.long_stalls = 0.0       # probability that a 16..255-cycle stall begins
        self.stalled = False         # hold ready low until cleared
        self.received = []           # (cycle, payload) of each output transfer
        self.sent = []               # cycle of each input transfer
        self.clock_ns = clock_ns
        self.protocol_errors = []
        self.valid_in.value = 0
        self.payload_in.value = 0
        self.ready_out.value = 0
        Clock(dut.clk, clock_ns, unit="ns").start()
        cocotb.start_soon(self._sink())

    @property
    def cycle(self) -> int:
        """The number of the clock edge just passed (from simulated time, so every coroutine agrees)."""
        from cocotb.utils import get_sim_time
        return int(get_sim_time("ns")) // self.clock_ns

    async def reset(self):
        from cocotb.triggers import ClockCycles
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 1)
        self.received.clear()
        self.sent.clear()

    async def _sink(self):
        from cocotb.triggers import RisingEdge
        stall_left = 0
        held = None
        while True:
            if self.stalled:
                ready = False
            elif stall_left:
                stall_left -= 1
                ready = False
            elif self.long_stalls and self.rng.random() < self.long_stalls:
                stall_left = self.rng.randrange(16, 256)
                ready = False
            else:
                ready = not (self.backpressure and self.rng.random() < self.backpressure)
            self.ready_out.value = int(ready)
            await RisingEdge(self.dut.clk)
            valid = int(self.valid_out.value)
            payload = int(self.payload_out.value) if valid else None
            if held is not None and (not valid or payload != held):
                self.protocol_errors.append(f"cycle {self.cycle}: output changed from {held:#x} to "
                                            f"{'(not valid)' if not valid else hex(payload)} before a transfer")
            if valid and ready:
                self.received.append((self.cycle, payload))
                held = None
            else:
                held = payload if valid else None

    async def send(self, payloads, *, gaps: float | None = None):
        """Drive `payloads` into the input stream, each held until taken, with random idle gaps."""
        from cocotb.triggers import RisingEdge
        gaps = self.gaps if gaps is None else gaps
        for payload in payloads:
            while gaps and self.rng.random() < gaps:
                self.valid_in.value = 0
                await RisingEdge(self.dut.clk)
            self.valid_in.value = 1
            self.payload_in.value = int(payload)
            await RisingEdge(self.dut.clk)
            while not int(self.ready_in.value):
                await RisingEdge(self.dut.clk)
            self.sent.append(self.cycle)
        self.valid_in.value = 0

    async def wait_for(self, count: int, *, cycles: int = 100_000):
        """Wait until `count` outputs have arrived (AssertionError after `cycles` cycles)."""
        from cocotb.triggers import RisingEdge
        for _ in range(cycles):
            if len(self.received) >= count:
                return [payload for _, payload in self.received[:count]]
            await RisingEdge(self.dut.clk)
        raise AssertionError(f"only {len(self.received)} of {count} outputs after {cycles} cycles")

    async def finish(self, expected: int, *, quiet_cycles: int = 100):
        """End of a test: exactly `expected` outputs, none after them in `quiet_cycles` cycles with ready
        high, no stream-rule violation."""
        from cocotb.triggers import ClockCycles
        self.stalled = False
        self.backpressure = self.long_stalls = 0.0
        await self.wait_for(expected)
        await ClockCycles(self.dut.clk, quiet_cycles)
        assert len(self.received) == expected, f"{len(self.received) - expected} outputs beyond the expected"
        assert not self.protocol_errors, self.protocol_errors[:5]
        assert not int(self.valid_out.value), "an output is still valid after the test"
