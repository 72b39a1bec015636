"""tensornic host runtime: open a device (board, simulator), read its identity, move data, drive engines.

    import tensornic
    with tensornic.open("sim") as dev:          # or "/dev/ttyUSB0", baud=3_000_000
        print(dev.info)
        dev.write(dev.regions["scratch"][0], b"hello world!")
"""

import os as _os

from .errors import *  # noqa: F401,F403
from .errors import TransportError
from .device import Device

__all__ = ["open", "Device"] + [name for name in dir() if name.endswith(("Error", "Timeout", "Mismatch"))]

#: Targets that start a simulated device instead of opening a serial port.
SIM_TARGETS = {"sim": "stream", "sim-uart": "uart"}


def open(target="sim", *, baud=None, timeout=0.25, retries=10, check_map=True, status=None,
         **options) -> Device:
    """Open a tensornic device.

    target: "sim" (Verilated SoC behind a pty, bytes fed to the bridge directly), "sim-uart" (the same with
    the bit-level UART path), "emulator" (the bit-exact Python model, in process, no simulator), or a
    serial port path such as "/dev/ttyUSB0".
    baud: the host's line rate (default: 3 Mbaud; a board's default is in docs/boards.md). With "sim-uart"
    the simulated cable runs at this rate, so a wrong one fails as it would on a board.
    timeout, retries: per-transaction response timeout (s, grows with the transfer size) and retry count.
    check_map: refuse a device whose register-map hash differs from this package's (keep True).
    status: optional callable(str) told about slow steps (building the simulator).
    config: (simulator and emulator) the SocConfig to build or model, e.g. `engine_sim_config()` from
    tensornic.engine for a device with the contraction engine.
    """
    if target == "emulator":
        from .emulator import EmulatedDevice, EmulatorTransport
        config = options.pop("config", None)
        if options:
            raise TypeError(f"unexpected options for the emulator: {sorted(options)} (it takes config=)")
        transport = EmulatorTransport(EmulatedDevice(config) if config is not None else None)
    elif target in SIM_TARGETS:
        from .sim.device import SimTransport
        transport = SimTransport(mode=SIM_TARGETS[target], baud=baud, status=status, **options)
    else:
        if options:
            raise TypeError(f"unexpected options for a serial port: {sorted(options)}")
        if not isinstance(target, str) or not target:
            raise TransportError(f"target must be 'sim', 'sim-uart', 'emulator' or a serial port path, "
                                 f"not {target!r}")
        if not target.startswith(("socket://", "rfc2217://", "loop://")) and not _os.path.exists(target):
            raise TransportError(
                f"serial port {target!r} does not exist. Is the board plugged in? "
                "List candidates with `ls /dev/ttyUSB* /dev/ttyACM*`, or use target='sim' for the simulator.")
        from .transport import SerialTransport
        transport = SerialTransport(target, baud=baud or 3_000_000)
    return Device(transport, timeout=timeout, retries=retries, check_map=check_map)
