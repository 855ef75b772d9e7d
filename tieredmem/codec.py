"""Frames: how values become bytes on disk and back.

A frame is one header byte followed by a payload.  The low nibble of the header names the
codec (:data:`JSON` for orjson, :data:`RAW` for ``bytes`` stored as they are); bits 4-5
name the compression: :data:`NONE`, :data:`ZSTD`, or :data:`ZSTD_DICT` (zstd with a
dictionary trained on the store's own values; the frame then carries the dictionary's
4-byte id after the header).  Because every frame says how it was written, a file stays
readable when the defaults (threshold, level, dictionary) change.

Bits 6 and 7, :data:`CHECKED` (both set, so that no single flipped bit turns a checked
header into an unchecked one), mark a frame that carries a checksum, which every read verifies
(bit rot becomes :class:`~tieredmem.CorruptValueError`, never a silently changed value):
an uncompressed one has the CRC-32 of its payload (4 bytes, little-endian) after the
header; a compressed one is a zstd frame with zstd's content checksum (its frame header
must say so).  Every frame written since format 2 of the frame header is checked; frames
without the bit, written before, still read (unverified).

Why dictionaries: agent data is many small, similar JSON values (messages, memories,
preferences).  Alone, a ~1 KB value compresses to about half; with a dictionary trained
on a sample of earlier values it compresses to about a third, and both compressing and
decompressing get faster, because the dictionary primes zstd's tables (measured in
``benchmarks/kv.py``).  The codec collects samples from the payloads it frames, a
:class:`~tieredmem.Store` trains one dictionary once enough have passed, keeps it in the
file, and every process that opens the file loads it.

No pickle, ever: decoding a frame never runs code from the file.

>>> codec = Codec(compress_threshold=64)
>>> codec.decode(codec.encode({"role": "user", "content": "hi"}))
{'role': 'user', 'content': 'hi'}
>>> codec.decode(codec.encode(b"\\x00raw"))
b'\\x00raw'
"""

from __future__ import annotations

import dataclasses
import enum
import math
import struct
import sys
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
import zstandard

from .errors import CorruptValueError, SerializationError

__all__ = [
    "CHECKED",
    "JSON",
    "JSON_OPTIONS",
    "NONE",
    "RAW",
    "ZSTD",
    "ZSTD_DICT",
    "Codec",
    "check_finite",
    "dumps_json",
    "loads_json",
]

JSON = 0x01
RAW = 0x02
NONE = 0x00
ZSTD = 0x10
ZSTD_DICT = 0x20
#: The frame carries a checksum (a CRC-32, or zstd's content checksum).  Two bits, so a
#: header is two bit flips away from every header of another kind of checking.
CHECKED = 0xC0

_CODECS = (JSON, RAW)
_COMPRESSION = 0x30
#: A zstd frame header's descriptor byte (after the 4-byte magic) has this bit when the
#: frame ends with a content checksum.
_ZSTD_CHECKSUM_FLAG = 0x04
#: The header and CRC-32 of an uncompressed checked frame; the CRC-32 read back.
_PLAIN_HEAD = struct.Struct("<BI").pack
_CRC = struct.Struct("<I").unpack_from
#: orjson options of every JSON payload (numpy arrays encode as lists).
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
#: Header -> (codec, start of the zstd frame) of the checked zstd frames writes make.
_CHECKED_ZSTD = {
    codec | kind | CHECKED: (codec, start)
    for codec in (JSON, RAW)
    for kind, start in ((ZSTD, 1), (ZSTD_DICT, 5))
}
#: A payload is compressed only if that saves at least 1/MIN_SAVING (10%) of its bytes;
#: below that, every read would pay a decompression for little disk.
MIN_SAVING = 10
#: Largest decompressed frame accepted; a header claiming more is treated as corrupt.
MAX_FRAME = 1 << 31
#: zstd contexts kept for reuse per dictionary (about one per concurrently busy thread).
_FREE_CONTEXTS = 8
#: Free-list key of the compressors of payloads over DICT_MAX_PAYLOAD (no dictionary).
_LARGE = -1


def _non_finite(value: Any, path: str) -> str | None:
    """The path of the first NaN or infinity in *value* (as orjson walks it), else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, (str, int, bytes)) or value is None:
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _non_finite(v, f"{path}[{k!r}]")
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _non_finite(v, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if isinstance(value, enum.Enum):
        return _non_finite(value.value, f"{path}.value")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            found = _non_finite(getattr(value, field.name, None), f"{path}.{field.name}")
            if found is not None:
                return found
        return None
    numpy = sys.modules.get("numpy")  # a numpy value implies numpy is imported
    if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
        kind = value.dtype.kind
        if kind in "fc" and not bool(numpy.isfinite(value).all()):
            return path
    return None


def _has_non_finite(value: Any) -> bool:
    """:func:`_non_finite` without building paths: the common types without recursion."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    isfinite = math.isfinite
    while stack:
        v = pop()
        t = type(v)
        if t is str or t is int or t is bool or v is None:
            continue
        if t is float:
            if not isfinite(v):
                return True
        elif t is dict:
            extend(v.values())
        elif t is list or t is tuple:
            extend(v)
        elif _non_finite(v, "") is not None:  # subclasses, enums, dataclasses, numpy
            return True
    return False


def check_finite(value: Any, payload: bytes, *, key: str | None = None) -> None:
    """Refuse a value holding NaN or an infinity, which JSON cannot express (orjson
    writes them as ``null``, so they would come back as ``None``).

    Only a payload containing ``null`` can hold one, so other values cost one byte scan.

    :raises SerializationError: naming *key* and where in the value the number is.
    """
    if b"null" not in payload or not _has_non_finite(value):
        return
    where = _non_finite(value, "value")
    whose = f" for key {key!r}" if key is not None else ""
    raise SerializationError(
        f"cannot store {where}{whose}: NaN and infinities have no JSON form (they would "
        "come back as None); store None, a string such as 'nan', or the number as bytes"
    )


def dumps_json(value: Any, *, key: str | None = None) -> bytes:
    """Encode *value* with orjson, raising :class:`SerializationError` naming *key*.

    :raises SerializationError: the value (or something inside it) is not JSON-compatible,
        or holds a NaN or an infinity (see :func:`check_finite`).
    """
    try:
        out = orjson.dumps(value, option=JSON_OPTIONS)
    except TypeError as exc:
        where = f" for key {key!r}" if key is not None else ""
        raise SerializationError(
            f"cannot store value of type {type(value).__name__}{where}: {exc}. "
            "Store JSON-compatible data (dict, list, str, int, float, bool, None, datetime, "
            "UUID, dataclass, numpy array) or bytes."
        ) from None
    if b"null" in out:  # NaN and infinities are written as null: look closer
        check_finite(value, out, key=key)
    # orjson's bytes keep the buffer it grew while writing (4 KiB for a 500-byte value);
    # the hot tier and histories hold payloads, so keep a right-sized copy (~0.1 us/KB).
    return bytes(memoryview(out))


loads_json = orjson.loads


_Ctx = TypeVar("_Ctx")


def _saves(packed: int, size: int) -> bool:
    """True if a compressed frame of *packed* bytes is worth its decompression on every
    read: it saves at least 1/:data:`MIN_SAVING` of the *size* bytes kept plain."""
    return packed * MIN_SAVING <= size * (MIN_SAVING - 1)


def _take(pools: dict[int, list[_Ctx]], key: int) -> _Ctx | None:
    """A free context of *pools[key]*, or None (``list.pop`` is atomic)."""
    free = pools.get(key)
    if free:
        try:
            return free.pop()
        except IndexError:  # another thread took the last one
            pass
    return None


def _give(pools: dict[int, list[_Ctx]], key: int, ctx: _Ctx) -> None:
    """Return a context for reuse (at most ``_FREE_CONTEXTS`` are kept per key)."""
    free = pools.setdefault(key, [])
    if len(free) < _FREE_CONTEXTS:
        free.append(ctx)


class Codec:
    """orjson + zstd frames with per-thread compression contexts.

    :param int compress_threshold: payloads of at least this many bytes are compressed.
    :param int level: zstd compression level.
    :param int large_level: zstd level of payloads over ``DICT_MAX_PAYLOAD`` (history
        chunks, large checkpoints): level 1 takes about half the time of level 3 on them,
        for about 2% more bytes.
    :param bool dictionary: collect samples for a zstd dictionary (see the module doc);
        ``False`` never compresses with one (frames that need one still decode).
    """

    #: Payloads larger than this are compressed alone (a dictionary helps small ones)
    #: and are not sampled.
    DICT_MAX_PAYLOAD = 16 * 1024
    #: Train once this many payload bytes were sampled, from at least DICT_MIN_SAMPLES.
    DICT_SAMPLE_BYTES = 1 << 20
    DICT_MIN_SAMPLES = 256
    #: Size of a trained dictionary.
    DICT_SIZE = 64 * 1024

    def __init__(
        self,
        compress_threshold: int = 256,
        level: int = 3,
        dictionary: bool = True,
        large_level: int = 1,
    ) -> None:
        self.compress_threshold = compress_threshold
        self.level = level
        self.large_level = large_level
        self._free_c: dict[int, list[zstandard.ZstdCompressor]] = {}
        self._free_d: dict[int, list[zstandard.ZstdDecompressor]] = {}
        self._dicts: dict[int, zstandard.ZstdCompressionDict] = {}
        self._active: int | None = None  # id of the dictionary new frames use
        self._loader: Callable[[int], bytes | None] | None = None
        self._sampling = dictionary
        self._samples: list[bytes | bytearray | memoryview] = []
        self._sampled = 0
        self._lock = threading.Lock()

    # -- dictionaries -------------------------------------------------------------------
    def disable_sampling(self) -> None:
        """Never train a dictionary (a backend that cannot store one)."""
        self._sampling = False

    def set_loader(self, loader: Callable[[int], bytes | None]) -> None:
        """Where to fetch a dictionary a frame names but this codec has not seen (one
        another process trained): the store's backend."""
        self._loader = loader

    def add_dictionary(self, dict_id: int, data: bytes, *, activate: bool = True) -> None:
        """Know dictionary *dict_id*; with *activate*, compress new frames with it."""
        zdict = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
        zdict.precompute_compress(level=self.level)
        with self._lock:
            self._dicts[dict_id] = zdict
            if activate and (self._active is None or dict_id > self._active):
                self._active = dict_id
                self._sampling = False
                self._samples = []

    @property
    def dictionary_id(self) -> int | None:
        """The id of the dictionary new frames are compressed with (``None``: none yet)."""
        return self._active

    def wants_dictionary(self) -> bool:
        """True once enough samples passed to train a dictionary (see :meth:`train`)."""
        return (
            self._sampling
            and self._sampled >= self.DICT_SAMPLE_BYTES
            and len(self._samples) >= self.DICT_MIN_SAMPLES
        )

    def train(self) -> bytes | None:
        """Train a dictionary on the samples collected so far and stop sampling.

        Returns the dictionary's bytes (store them, then :meth:`add_dictionary`), or
        ``None`` when the samples do not make a useful one.
        """
        with self._lock:
            samples, self._samples, self._sampling = self._samples, [], False
        if not samples:
            return None
        try:
            zdict = zstandard.train_dictionary(self.DICT_SIZE, list(samples), level=self.level)
        except zstandard.ZstdError:
            return None  # e.g. samples too uniform or too few: compress without one
        return zdict.as_bytes()

    def _sample(self, payload: bytes) -> None:
        if self._sampled < self.DICT_SAMPLE_BYTES:
            self._samples.append(payload)
            self._sampled += len(payload)

    def _dict(self, dict_id: int) -> zstandard.ZstdCompressionDict:
        zdict = self._dicts.get(dict_id)
        if zdict is None:
            data = self._loader(dict_id) if self._loader is not None else None
            if data is None:
                raise CorruptValueError(
                    f"frame needs zstd dictionary {dict_id}, which the store does not "
                    "have: the file is damaged or was copied without its dictionaries"
                )
            self.add_dictionary(dict_id, data, activate=False)
            zdict = self._dicts[dict_id]
        return zdict

    # -- contexts ---------------------------------------------------------------------
    # zstd contexts are costly to create (tens to hundreds of microseconds, more than
    # compressing a small value) and must not be shared by two threads at once.  They
    # live in free lists, keyed by dictionary id (0: none; _LARGE: none, at
    # ``large_level``), rather than per thread: a context outlives the short-lived
    # threads of an executor (LangGraph's checkpoint writes) and is reused by the next.
    # ``list.pop``/``append`` are atomic.
    def _new_compressor(self, key: int) -> zstandard.ZstdCompressor:
        if key == _LARGE:
            return zstandard.ZstdCompressor(level=self.large_level, write_checksum=True)
        if key:
            return zstandard.ZstdCompressor(
                level=self.level,
                dict_data=self._dicts[key],
                write_dict_id=False,
                write_checksum=True,
            )
        return zstandard.ZstdCompressor(level=self.level, write_checksum=True)

    def _compress(self, key: int, payload: bytes | memoryview) -> bytes:
        comp = _take(self._free_c, key)
        if comp is None:
            comp = self._new_compressor(key)
        try:
            return comp.compress(payload)
        finally:
            _give(self._free_c, key, comp)

    def _decompress(self, dict_id: int, data: memoryview) -> bytes:
        dec = _take(self._free_d, dict_id)
        if dec is None:
            dec = (
                zstandard.ZstdDecompressor(dict_data=self._dict(dict_id))
                if dict_id
                else zstandard.ZstdDecompressor()
            )
        try:
            return dec.decompress(data, max_output_size=MAX_FRAME)
        finally:
            _give(self._free_d, dict_id, dec)

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
        """Inverse of :meth:`payload`.

        :raises CorruptValueError: a JSON payload does not decode.
        """
        if codec == JSON:
            try:
                return orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise CorruptValueError(f"damaged JSON value: {exc}") from None
        return payload

    @staticmethod
    def plain(codec: int, payload: bytes) -> bytes:
        """The uncompressed frame of a payload: the header, the payload's CRC-32, the
        payload."""
        return _PLAIN_HEAD(codec | CHECKED, zlib.crc32(payload)) + payload

    def frame(self, codec: int, payload: bytes) -> bytes:
        """Wrap a payload in a frame, compressing it when it is large enough to pay off."""
        if len(payload) >= self.compress_threshold:
            packed = self._pack(codec, payload)
            if packed is not None:
                return packed
        return self.plain(codec, payload)

    def frames(self, items: Sequence[tuple[int, bytes]]) -> list[bytes]:
        """:meth:`frame` of each ``(codec, payload)``, the same bytes, for a batch commit.

        The payloads the active dictionary compresses go through one zstd call
        (``multi_compress_to_buffer``): one release of the interpreter lock for the batch
        instead of one per value.  A commit thread that releases it per value waits to
        take it back each time while the caller runs Python beside it (a lock convoy).
        """
        out: list[bytes | None] = [None] * len(items)
        dict_id = self._active
        if dict_id is not None:
            lo, hi = self.compress_threshold, self.DICT_MAX_PAYLOAD
            chosen = [i for i, (_, p) in enumerate(items) if lo <= len(p) <= hi]
            packed = self._compress_many(dict_id, [memoryview(items[i][1]) for i in chosen])
            if packed is not None:
                head = dict_id.to_bytes(4, "little")
                for i, segment in zip(chosen, packed):
                    codec, payload = items[i]
                    if _saves(len(segment) + 4, len(payload)):
                        out[i] = b"".join((bytes((codec | ZSTD_DICT | CHECKED,)), head, segment))
                    else:
                        out[i] = self.plain(codec, payload)
        return [f if f is not None else self.frame(*item) for f, item in zip(out, items)]

    def _compress_many(
        self, key: int, payloads: list[bytes | bytearray | memoryview]
    ) -> list[bytes] | None:
        """Compressed *payloads* in one zstd call; None where that is not worth it or not
        available (zstandard's CFFI backend has no multi_compress_to_buffer)."""
        if len(payloads) < 2:
            return None
        comp = _take(self._free_c, key)
        if comp is None:
            comp = self._new_compressor(key)
        try:
            collection = comp.multi_compress_to_buffer(payloads, threads=1)
        except (AttributeError, NotImplementedError):
            return None
        finally:
            _give(self._free_c, key, comp)
        return [collection[i].tobytes() for i in range(len(collection))]

    def _pack(self, codec: int, payload: bytes | memoryview) -> bytes | None:
        size = len(payload)
        dict_id = self._active
        if dict_id is not None and size <= self.DICT_MAX_PAYLOAD:
            packed = self._compress(dict_id, payload)
            if _saves(len(packed) + 4, size):
                head = bytes((codec | ZSTD_DICT | CHECKED,)) + dict_id.to_bytes(4, "little")
                return head + packed
            return None
        if self._sampling and size <= self.DICT_MAX_PAYLOAD:
            self._sample(bytes(payload))
        packed = self._compress(0 if size <= self.DICT_MAX_PAYLOAD else _LARGE, payload)
        if _saves(len(packed), size):
            return bytes((codec | ZSTD | CHECKED,)) + packed
        return None

    def unframe(self, frame: bytes) -> tuple[int, bytes]:
        """Return ``(codec, payload)`` from a frame, its checksum verified.

        :raises CorruptValueError: the header is unknown, the checksum does not match, or
            the payload is otherwise damaged.
        """
        # The frames every current write makes (checked zstd, with or without a
        # dictionary), in one frame of Python: a cold read pays this on every value.
        # Anything else, or a check that fails, takes the general path below.
        kind = _CHECKED_ZSTD.get(frame[0]) if frame else None
        if kind is not None:
            codec, start = kind
            if len(frame) >= start + 5 and frame[start + 4] & _ZSTD_CHECKSUM_FLAG:
                dict_id = int.from_bytes(frame[1:5], "little") if start == 5 else 0
                free = self._free_d.get(dict_id)
                if not free:  # no free context yet: the general path makes one
                    return self._unframe(frame)
                try:
                    dec = free.pop()
                except IndexError:  # another thread took the last one
                    return self._unframe(frame)
                try:
                    return codec, dec.decompress(frame[start:], max_output_size=MAX_FRAME)
                except zstandard.ZstdError as exc:
                    raise CorruptValueError(f"damaged compressed value: {exc}") from None
                except MemoryError:  # a damaged header claiming an impossible size
                    raise CorruptValueError("damaged compressed value: impossible size") from None
                finally:
                    if len(free) < _FREE_CONTEXTS:
                        free.append(dec)
        return self._unframe(frame)

    def _unframe(self, frame: bytes) -> tuple[int, bytes]:
        """:meth:`unframe` of any frame (the general path)."""
        if not frame:
            raise CorruptValueError("empty frame: the stored row is damaged")
        header = frame[0]
        codec, compression, checked = header & 0x0F, header & _COMPRESSION, header & CHECKED
        if codec not in _CODECS or checked not in (0, CHECKED):
            compression = -1
        if compression == NONE:
            if not checked:
                return codec, frame[1:]  # written before checksums
            if len(frame) < 5:
                raise CorruptValueError("truncated frame: the stored row is damaged")
            payload = frame[5:]
            if zlib.crc32(payload) != _CRC(frame, 1)[0]:
                raise CorruptValueError("checksum mismatch: the stored value changed on disk")
            return codec, payload
        if compression == ZSTD_DICT:
            dict_id, start = int.from_bytes(frame[1:5], "little"), 5
            if len(frame) < 6:
                raise CorruptValueError("truncated frame: the stored row is damaged")
        elif compression == ZSTD:
            dict_id, start = 0, 1
        else:
            raise CorruptValueError(
                f"unknown frame header 0x{header:02x}: written by a newer tieredmem or damaged"
            )
        if checked and (len(frame) < start + 5 or not frame[start + 4] & _ZSTD_CHECKSUM_FLAG):
            raise CorruptValueError("checksum missing: the stored frame header changed on disk")
        try:
            return codec, self._decompress(dict_id, memoryview(frame)[start:])
        except zstandard.ZstdError as exc:
            raise CorruptValueError(f"damaged compressed value: {exc}") from None
        except MemoryError:  # a damaged header claiming a size that cannot be allocated
            raise CorruptValueError("damaged compressed value: impossible size") from None

    def check(self, frame: bytes) -> None:
        """Verify *frame* as a read would (checksum, then decoding).

        :raises CorruptValueError: the frame is damaged.
        """
        self.load_payload(*self.unframe(frame))

    # -- values -----------------------------------------------------------------------
    def encode(self, value: Any, *, key: str | None = None) -> bytes:
        """Encode *value* to a frame.

        :raises SerializationError: *value* is neither JSON-compatible nor bytes.
        """
        return self.frame(*self.payload(value, key=key))

    def decode(self, frame: bytes) -> Any:
        """Decode a frame written by :meth:`encode` (with any threshold or level).

        :raises CorruptValueError: the frame is damaged.
        """
        return self.load_payload(*self.unframe(frame))
