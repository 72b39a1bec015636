"""The host-link wire format: constants shared by the gateware bridge, the host client and the link model.

One place defines the frame layout (see docs/host-link.md); gateware, host and models import it.

Request  (host → device): SYNC_REQUEST, op, seq, addr[4 LE], length[2 LE], header CRC-32[4 LE],
                          then for WRITE: payload[length], payload CRC-32[4 LE].
Response (device → host): SYNC_RESPONSE, status, seq, length[2 LE], header CRC-32[4 LE],
                          then if length > 0: data[length], data CRC-32[4 LE].

Every CRC is CRC-32/ISO-HDLC (zlib.crc32, the Ethernet FCS polynomial), computed over the header bytes
after the sync byte, or over the payload bytes alone.
"""

import enum
import struct
import zlib

SYNC_REQUEST = 0xA5
SYNC_RESPONSE = 0x5A

#: op, seq, addr, length (after the sync byte, before the header CRC)
REQUEST_FIELDS = struct.Struct("<BBIH")
#: status, seq, length (after the sync byte, before the header CRC)
RESPONSE_FIELDS = struct.Struct("<BBH")
CRC_BYTES = 4
REQUEST_HEADER_BYTES = 1 + REQUEST_FIELDS.size + CRC_BYTES    # 13
RESPONSE_HEADER_BYTES = 1 + RESPONSE_FIELDS.size + CRC_BYTES  # 9

#: Bus word: addresses and lengths of READ/WRITE are multiples of this.
WORD_BYTES = 4
#: Largest length field the format can carry; a device's own limit (max_transfer) is in its config ROM.
LENGTH_FIELD_MAX = 0xFFFF


class Op(enum.IntEnum):
    #: No operation; answers OK and forgets the remembered last write (used when a host opens the link).
    NOP = 0x01
    #: Read `length` bytes starting at `addr`.
    READ = 0x02
    #: Write the payload at `addr`; executed once per distinct request even if retried.
    WRITE = 0x03


class Status(enum.IntEnum):
    OK = 0x00
    #: The payload CRC did not match; nothing was written.
    CRC_ERROR = 0x01
    #: The opcode is not one of `Op`.
    BAD_OPCODE = 0x02
    #: The range [addr, addr+length) is not inside one region of the memory map.
    BAD_ADDRESS = 0x03
    #: The length is zero, above the device's max_transfer, or not a multiple of WORD_BYTES.
    BAD_LENGTH = 0x04
    #: The address is not a multiple of WORD_BYTES.
    BAD_ALIGNMENT = 0x05
    #: The region is read-only (the ID ROM).
    READ_ONLY = 0x06
    #: The target cannot accept the access now; retry later.
    BUSY = 0x07


def crc32(data):
    return zlib.crc32(bytes(data)) & 0xFFFFFFFF


def encode_request(op, seq, addr, payload=b"", length=None):
    """Frame a request. `length` defaults to len(payload) (READ passes the byte count to read)."""
    payload = bytes(payload)
    if length is None:
        length = len(payload)
    fields = REQUEST_FIELDS.pack(int(op), seq & 0xFF, addr & 0xFFFFFFFF, length & 0xFFFF)
    frame = bytes([SYNC_REQUEST]) + fields + crc32(fields).to_bytes(4, "little")
    if payload:
        frame += payload + crc32(payload).to_bytes(4, "little")
    return frame


def encode_response(status, seq, data=b""):
    data = bytes(data)
    fields = RESPONSE_FIELDS.pack(int(status), seq & 0xFF, len(data))
    frame = bytes([SYNC_RESPONSE]) + fields + crc32(fields).to_bytes(4, "little")
    if data:
        frame += data + crc32(data).to_bytes(4, "little")
    return frame
