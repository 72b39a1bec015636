"""The simulated device: the SoC built with Verilator and a native harness, served on a pseudo-terminal.

`SimTransport` starts the harness as a child process and talks to it through the unchanged
`SerialTransport` (pyserial on the pty path): the host code path is exactly the one used with a board.
The child exits when the transport closes and when the Python process exits or dies (its stdin, a pipe
from this process, reaches EOF); a child that died is reported as a SimulatorError with its last words.
"""

import os
import select
import subprocess
import time
import weakref
from importlib import resources
from pathlib import Path

from filelock import FileLock

from ..errors import SimulatorError
from ..transport import SerialTransport
from ..rtl.memory_map import SocConfig
from ..rtl.uart import divisor_for
from . import verilator as vl

#: Simulated cycles per wall-clock second the link timeouts allow for (`make bench` measures ~5 M).
SLOWEST_CYCLES_PER_SECOND = 1_000_000

#: The simulated SoC's configuration (its nominal clock sets what the cycle counter means).
SIM_CONFIG = SocConfig(clock_hz=48_000_000, baud=3_000_000, scratch_bytes=64 * 1024, max_transfer=4096)


def _harness_source() -> str:
    return resources.files(__package__).joinpath("harness.cpp").read_text()


def build_harness(config: SocConfig = SIM_CONFIG, *, status=None) -> Path:
    """Build (or reuse) the Verilated SoC + harness binary for `config`; return its path."""
    from ..rtl.soc import Soc

    build_dir = vl.build_dir_for("device", "soc", {"config": repr(config)})
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / "tensornic-sim"
    with FileLock(str(build_dir / ".lock")):
        verilog = vl.to_verilog(Soc(config, byte_port=True), "soc")
        source = build_dir / "soc.v"
        vl.write_if_changed(source, verilog)
        harness = build_dir / "harness.cpp"
        vl.write_if_changed(harness, _harness_source())
        args = [vl.verilator_executable(), "--cc", "--exe", "--build", "-j", "2", "-Wall",
                *vl.lint_args(), "-O3", "--x-assign", "fast", "--x-initial", "fast",
                "--top-module", "soc", "--Mdir", str(build_dir / "obj"), "-o", str(binary),
                "-CFLAGS", "-O2", str(source), str(harness)]

        vl.ensure_verilator_on_path()

        def build():
            if status:
                status("building the simulated device with Verilator (once per design, ~1 min)")
            log = build_dir / "build.log"
            with open(log, "w") as out:
                result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, cwd=build_dir)
            if result.returncode != 0 or not binary.exists():
                tail = log.read_text()[-3000:]
                raise SimulatorError(f"Verilator could not build the simulated device "
                                     f"(log: {log}):\n{tail}")

        vl.cached_build(build_dir, [verilog, _harness_source(), args, vl.verilator_version()], build)
    return binary


class SimTransport(SerialTransport):
    """SerialTransport to a freshly started simulated device."""

    def __init__(self, config: SocConfig = SIM_CONFIG, *, mode="stream", start_timeout=30.0,
                 idle_cycles=1000, baud=None, binary=None, status=None):
        if mode not in ("stream", "uart"):
            raise ValueError(f"mode must be 'stream' (byte-level, fast) or 'uart' (bit-level), not {mode!r}")
        self.config = config
        self.mode = mode
        # `binary`: a harness built earlier (like a bitstream on a board); by default build or reuse one.
        binary = Path(binary) if binary else build_harness(config, status=status)
        divisor = divisor_for(config.clock_hz, config.baud)
        self._stderr_path = binary.parent / f"harness-{os.getpid()}-{id(self)}.log"
        self._stderr = open(self._stderr_path, "w+")
        self._proc = subprocess.Popen(
            [str(binary), "--mode", mode, "--divisor-q4", str(divisor), "--idle-cycles", str(idle_cycles),
             "--clock-hz", str(config.clock_hz)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, start_new_session=True)
        self._finalizer = weakref.finalize(self, _reap, self._proc)
        path = self._read_pty_path(start_timeout)
        # `baud` is the host's line rate; in uart mode the simulated cable follows it, so a rate other
        # than the device's behaves like a wrong baud rate on a board.
        try:
            super().__init__(path, baud=baud or config.baud)
        except BaseException:
            self.close()
            raise

    @property
    def seconds_per_byte(self):
        """Wall time of one byte on the simulated line: its cycles at the simulator's slowest expected
        speed (bit-level UART), or nothing much (byte stream: one byte per cycle)."""
        if self.mode == "stream":
            return 0.0
        return 10 * self.config.clock_hz / self.baud / SLOWEST_CYCLES_PER_SECOND

    def _read_pty_path(self, timeout):
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._proc.poll() is not None:
                break
            ready, _, _ = select.select([self._proc.stdout], [], [], remaining)
            if ready:
                chunk = os.read(self._proc.stdout.fileno(), 256)
                if not chunk:
                    break
                line += chunk
        if not line.startswith(b"PTY "):
            self.close()
            raise SimulatorError(f"the simulated device did not start (no pty announced within {timeout} s); "
                                 f"harness said: {self._last_words()!r}")
        return line[4:].strip().decode()

    def _last_words(self):
        try:
            self._stderr.flush()
            return Path(self._stderr_path).read_text()[-2000:]
        except OSError:
            return ""

    @property
    def pid(self):
        return self._proc.pid

    def check_alive(self):
        code = self._proc.poll()
        if code is not None:
            raise SimulatorError(f"the simulated device exited with status {code}; "
                                 f"harness said: {self._last_words()!r}. Open a new device.")

    def _guarded(self, operation, *args):
        """Run a SerialTransport operation; if it fails because the child died, say so."""
        try:
            return operation(*args)
        except Exception:
            self.check_alive()
            raise

    def read(self, size, timeout):
        return self._guarded(super().read, size, timeout)

    def write(self, data):
        return self._guarded(super().write, data)

    def drain(self):
        return self._guarded(super().drain)

    def close(self):
        try:
            if getattr(self, "_serial", None) is not None:
                super().close()
        finally:
            self._finalizer()
            try:
                self._stderr.close()
                Path(self._stderr_path).unlink(missing_ok=True)
            except OSError:
                pass


def _reap(proc):
    """Stop the harness: EOF on its stdin, then SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except (OSError, AttributeError):
            pass
