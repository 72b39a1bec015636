"""Byte transports: the abstract channel the link client runs on, and the pyserial implementation.

The same `SerialTransport` drives a board's USB-UART and the simulated device's pseudo-terminal.
"""

import abc
import time

from .errors import TransportError


class Transport(abc.ABC):
    """A bidirectional byte channel."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send all of `data`."""

    @abc.abstractmethod
    def read(self, size: int, timeout: float) -> bytes:
        """Return up to `size` bytes, waiting at most `timeout` seconds for them (fewer on timeout)."""

    @abc.abstractmethod
    def drain(self) -> int:
        """Discard input that has already arrived; return how many bytes were dropped."""

    @property
    def seconds_per_byte(self) -> float:
        """Wall-clock time one byte takes on the line (0 for channels without a line rate)."""
        return 0.0

    def set_baud(self, baud: int) -> None:
        """Change the line rate (a no-op for channels without one)."""

    def check_alive(self) -> None:
        """Raise TransportError if the peer is known to be gone (used between retries)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the channel; idempotent."""


class SerialTransport(Transport):
    """A serial port through pyserial: a board's UART or the simulated device's pty."""

    def __init__(self, port: str, baud: int = 3_000_000):
        import serial  # deferred: pyserial is only needed for real channels

        self.port = port
        self.baud = baud
        try:
            self._serial = serial.Serial(port, baudrate=baud, timeout=0, write_timeout=10,
                                         exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(
                f"cannot open serial port {port!r} at {baud} baud: {exc}. "
                "Check the path (ls /dev/ttyUSB* /dev/ttyACM*), that no other program holds it, "
                "and that you may access it (the dialout group).") from exc

    def write(self, data):
        import serial
        try:
            self._serial.write(data)
            self._serial.flush()
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"writing to {self.port!r} failed: {exc}") from exc

    def read(self, size, timeout):
        import serial
        deadline = time.monotonic() + timeout
        chunks = []
        got = 0
        try:
            while got < size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._serial.timeout = remaining
                chunk = self._serial.read(size - got)
                if chunk:
                    chunks.append(chunk)
                    got += len(chunk)
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"reading from {self.port!r} failed: {exc}") from exc
        return b"".join(chunks)

    def drain(self):
        import serial
        dropped = 0
        try:
            while True:
                waiting = self._serial.in_waiting
                if not waiting:
                    break
                self._serial.timeout = 0
                dropped += len(self._serial.read(waiting))
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"reading from {self.port!r} failed: {exc}") from exc
        return dropped

    @property
    def seconds_per_byte(self):
        return 10.0 / self.baud          # 8N1: start, 8 data bits, stop

    def set_baud(self, baud):
        self._serial.baudrate = baud
        self.baud = baud

    def close(self):
        if self._serial is not None:
            try:
                self._serial.close()
            finally:
                self._serial = None
