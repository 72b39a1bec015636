"""Named exceptions of the tensornic host runtime. Every message says what went wrong and what to do."""


class TensornicError(Exception):
    """Base class of every error tensornic raises on purpose."""


class TransportError(TensornicError):
    """The byte channel itself failed: port missing, unreadable, closed, or its peer died."""


class LinkError(TensornicError):
    """The device answered, but only with frames that failed their checks, after every retry."""


class DeviceTimeout(TensornicError):
    """Nothing valid arrived from the device within the timeout, after every retry."""


class DeviceMismatch(TensornicError):
    """The device is not the one this package was built for (magic, version or register-map hash differ)."""


class SimulatorError(TransportError):
    """The simulated device could not be built or started, or it died."""


class DeviceError(TensornicError):
    """The device rejected a request with an error status. `status` holds the link_format.Status."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class BadAddress(DeviceError):
    """The range is not inside one region of the device's memory map."""


class BadLength(DeviceError):
    """The length is zero, above max_transfer, or not a multiple of the bus word."""


class BadAlignment(DeviceError):
    """The address is not a multiple of the bus word."""


class ReadOnly(DeviceError):
    """The region or register cannot be written."""


class BadOpcode(DeviceError):
    """The device does not know the request's opcode (a host/bitstream version skew)."""
