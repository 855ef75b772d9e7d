"""Frames: how values become bytes on disk and back.

A frame is one header byte followed by a payload.  The low nibble of the header names the
codec (:data:`JSON` for orjson, :data:`RAW` for ``bytes`` stored as they are); the high
nibble names the compression (:data:`NONE` or :data:`ZSTD`).  Because every frame says how
it was written, a file stays readable when the defaults (threshold, level) change.

No pickle, ever: decoding a frame never runs code from the file.

>>> codec = Codec(compress_threshold=64)
>>> codec.decode(codec.encode({"role": "user", "content": "hi"}))
{'role': 'user', 'content': 'hi'}
>>> codec.decode(codec.encode(b"\\x00raw"))
b'\\x00raw'
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
import zstandard

from .errors import SerializationError

__all__ = ["JSON", "NONE", "RAW", "ZSTD", "Codec", "dumps_json", "loads_json"]

JSON = 0x01
RAW = 0x02
NONE = 0x00
ZSTD = 0x10

_CODECS = (JSON, RAW)
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
#: Largest decompressed frame accepted; a header claiming more is treated as corrupt.
MAX_FRAME = 1 << 31


def dumps_json(value: Any, *, key: str | None = None) -> bytes:
    """Encode *value* with orjson, raising :class:`SerializationError` naming *key*.

    :raises SerializationError: the value (or something inside it) is not JSON-compatible.
    """
    try:
        out = orjson.dumps(value, option=_OPTIONS)
    except TypeError as exc:
        where = f" for key {key!r}" if key is not None else ""
        raise SerializationError(
            f"cannot store value of type {type(value).__name__}{where}: {exc}. "
            "Store JSON-compatible data (dict, list, str, int, float, bool, None, datetime, "
            "UUID, dataclass, numpy array) or bytes."
        ) from None
    # orjson's bytes keep the buffer it grew while writing (4 KiB for a 500-byte value);
    # the hot tier and histories hold payloads, so keep a right-sized copy (~0.1 us/KB).
    return bytes(memoryview(out))


loads_json = orjson.loads


class Codec:
    """orjson + zstd frames with per-thread compression contexts.

    :param int compress_threshold: payloads of at least this many bytes are compressed.
    :param int level: zstd compression level.
    """

    def __init__(self, compress_threshold: int = 256, level: int = 3) -> None:
        self.compress_threshold = compress_threshold
        self.level = level
        self._local = threading.local()

    # -- contexts ---------------------------------------------------------------------
    def _compressor(self) -> zstandard.ZstdCompressor:
        local = self._local
        try:
            return local.c  # type: ignore[no-any-return]
        except AttributeError:
            local.c = zstandard.ZstdCompressor(level=self.level)
            return local.c  # type: ignore[no-any-return]

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        local = self._local
        try:
            return local.d  # type: ignore[no-any-return]
        except AttributeError:
            local.d = zstandard.ZstdDecompressor()
            return local.d  # type: ignore[no-any-return]

    # -- payloads ---------------------------------------------------------------------
    @staticmethod
    def payload(value: Any, *, key: str | None = None) -> tuple[int, bytes]:
        """Return ``(codec, payload)`` for *value* without compressing it."""
        if type(value) is bytes:
            return RAW, value
        if isinstance(value, (bytearray, memoryview)):
            return RAW, bytes(value)
        return JSON, dumps_json(value, key=key)

    @staticmethod
    def load_payload(codec: int, payload: bytes) -> Any:
        """Inverse of :meth:`payload`."""
        if codec == JSON:
            return orjson.loads(payload)
        return payload

    def frame(self, codec: int, payload: bytes) -> bytes:
        """Wrap a payload in a frame, compressing it when it is large enough to pay off."""
        if len(payload) >= self.compress_threshold:
            packed = self._compressor().compress(payload)
            if len(packed) < len(payload):
                return bytes((codec | ZSTD,)) + packed
        return bytes((codec,)) + payload

    def unframe(self, frame: bytes) -> tuple[int, bytes]:
        """Return ``(codec, payload)`` from a frame.

        :raises SerializationError: the frame header is unknown or the payload is damaged.
        """
        if not frame:
            raise SerializationError("empty frame: the stored row is damaged")
        header = frame[0]
        codec, compression = header & 0x0F, header & 0xF0
        if codec not in _CODECS or compression not in (NONE, ZSTD):
            raise SerializationError(
                f"unknown frame header 0x{header:02x}: written by a newer tieredmem or damaged"
            )
        body = frame[1:]
        if compression == ZSTD:
            try:
                body = self._decompressor().decompress(body, max_output_size=MAX_FRAME)
            except zstandard.ZstdError as exc:
                raise SerializationError(f"damaged compressed frame: {exc}") from None
        return codec, bytes(body)

    # -- values -----------------------------------------------------------------------
    def encode(self, value: Any, *, key: str | None = None) -> bytes:
        """Encode *value* to a frame.

        :raises SerializationError: *value* is neither JSON-compatible nor bytes.
        """
        return self.frame(*self.payload(value, key=key))

    def decode(self, frame: bytes) -> Any:
        """Decode a frame written by :meth:`encode` (with any threshold or level)."""
        codec, payload = self.unframe(frame)
        try:
            return self.load_payload(codec, payload)
        except orjson.JSONDecodeError as exc:
            raise SerializationError(f"damaged JSON frame: {exc}") from None
