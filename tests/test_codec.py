from __future__ import annotations

import dataclasses
import datetime as dt
import os
import uuid

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tieredmem.codec import CHECKED, JSON, RAW, ZSTD, ZSTD_DICT, Codec
from tieredmem.errors import SerializationError

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(json_values)
def test_round_trip_json(value: object) -> None:
    codec = Codec(compress_threshold=16)
    assert codec.decode(codec.encode(value)) == value


@given(st.binary())
def test_round_trip_bytes(value: bytes) -> None:
    codec = Codec(compress_threshold=16)
    assert codec.decode(codec.encode(value)) == value


def test_frame_header_names_codec_and_compression() -> None:
    codec = Codec(compress_threshold=64)
    assert codec.encode({"a": 1})[0] == JSON | CHECKED
    assert codec.encode(b"x")[0] == RAW | CHECKED
    big = codec.encode({"text": "word " * 200})
    assert big[0] == JSON | ZSTD | CHECKED
    assert len(big) < 200


def test_frames_stay_readable_when_defaults_change() -> None:
    old = Codec(compress_threshold=10, level=19).encode(["hello"] * 50)
    assert Codec(compress_threshold=10_000, level=1).decode(old) == ["hello"] * 50


def test_incompressible_payload_stored_plain() -> None:
    import os

    data = os.urandom(4096)
    frame = Codec(compress_threshold=16).encode(data)
    assert frame[0] == RAW | CHECKED
    assert frame[5:] == data


@pytest.mark.parametrize("with_dictionary", [False, True])
def test_payload_compressed_only_when_it_saves_a_tenth(with_dictionary: bool) -> None:
    """A value that compresses by a few percent is kept plain (no decompression on every
    read); one that compresses by more is compressed, alone or in a batch."""
    import os

    codec, data = _trained()
    if with_dictionary:
        codec.add_dictionary(3, data)
    barely = os.urandom(1800) + b"a" * 150  # zstd saves about 7%
    well = os.urandom(1000) + b"a" * 900  # zstd saves about 45%
    for frame in (codec.encode(barely), *codec.frames([(RAW, barely), (RAW, barely)])):
        assert frame[0] == RAW | CHECKED
        assert codec.decode(frame) == barely
    for frame in (codec.encode(well), *codec.frames([(RAW, well), (RAW, well)])):
        assert frame[0] & 0x30
        assert len(frame) < len(well) * 0.9
        assert codec.decode(frame) == well


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_rich_types_encode_as_json() -> None:
    codec = Codec()
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    uid = uuid.UUID(int=7)
    value = {"when": when, "id": uid, "p": Point(1, 2), "arr": np.arange(3)}
    assert codec.decode(codec.encode(value)) == {
        "when": "2026-01-02T03:04:05+00:00",
        "id": str(uid),
        "p": {"x": 1, "y": 2},
        "arr": [0, 1, 2],
    }


@pytest.mark.parametrize("bad", [object(), {1, 2}, {"k": object()}, {1: "non-str key"}])
def test_unsupported_value_names_key_and_type(bad: object) -> None:
    with pytest.raises(SerializationError) as info:
        Codec().encode(bad, key="my-key")
    assert "my-key" in str(info.value)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("frame", [b"", b"\x0f{}", b"\x11not zstd", b"\x01{bad json"])
def test_damaged_frames_raise_typed_error(frame: bytes) -> None:
    with pytest.raises(SerializationError):
        Codec().decode(frame)


def test_no_pickle_anywhere() -> None:
    import pathlib

    import tieredmem

    root = pathlib.Path(tieredmem.__file__).parent
    for path in root.rglob("*.py"):
        assert "import pickle" not in path.read_text(), path


def _similar(i: int) -> dict[str, object]:
    words = ["agent", "memory", "user", "asked", "about", "the", "weather", "in", "paris"]
    return {
        "id": i,
        "role": "assistant" if i % 2 else "user",
        "content": " ".join(words[(i * 7 + j) % len(words)] for j in range(60)) + f" #{i}",
    }


def _trained() -> tuple[Codec, bytes]:
    codec = Codec()
    for i in range(10_000):
        codec.encode(_similar(i))
        if codec.wants_dictionary():
            break
    assert codec.wants_dictionary()
    data = codec.train()
    assert data is not None
    return codec, data


def test_dictionary_frames_are_smaller_and_round_trip() -> None:
    codec, data = _trained()
    plain = [codec.encode(_similar(i)) for i in range(20_000, 20_100)]
    codec.add_dictionary(7, data)
    assert codec.dictionary_id == 7
    with_dict = [codec.encode(_similar(i)) for i in range(20_000, 20_100)]
    assert all(f[0] & 0x30 == ZSTD_DICT for f in with_dict)
    assert sum(map(len, with_dict)) < 0.8 * sum(map(len, plain))
    assert [codec.decode(f) for f in with_dict] == [_similar(i) for i in range(20_000, 20_100)]
    assert [codec.decode(f) for f in plain] == [_similar(i) for i in range(20_000, 20_100)]


def test_frames_of_a_batch_equal_frame_of_each() -> None:
    """Codec.frames (a batch commit's one zstd call) writes the bytes frame() writes."""
    codec, data = _trained()
    items = [codec.payload(_similar(i)) for i in range(30_000, 30_040)]
    items += [codec.payload(b"x" * 100), codec.payload("short"), codec.payload(os.urandom(600))]
    items += [codec.payload({"big": "y" * 40_000}), codec.payload(_similar(1))]
    assert codec.frames(items) == [codec.frame(c, p) for c, p in items]  # no dictionary yet
    codec.add_dictionary(5, data)
    frames = codec.frames(items)
    assert frames == [codec.frame(c, p) for c, p in items]
    assert sum(f[0] & 0x30 == ZSTD_DICT for f in frames) >= 40  # the batch used the dictionary
    assert [codec.load_payload(*codec.unframe(f)) for f in frames] == [
        codec.load_payload(c, p) for c, p in items
    ]
    assert codec.frames([]) == []


def test_unknown_dictionary_is_loaded_or_reported() -> None:
    codec, data = _trained()
    codec.add_dictionary(3, data)
    frame = codec.encode(_similar(1))
    other = Codec()
    with pytest.raises(SerializationError, match="dictionary 3"):
        other.decode(frame)
    asked: list[int] = []

    def loader(dict_id: int) -> bytes | None:
        asked.append(dict_id)
        return data if dict_id == 3 else None

    other.set_loader(loader)
    assert other.decode(frame) == _similar(1)
    assert other.decode(frame) == _similar(1)
    assert asked == [3]  # loaded once, then known
    assert other.dictionary_id is None  # a dictionary loaded to read is not used to write
    with pytest.raises(SerializationError, match="damaged"):
        other.decode(frame[:3])


def test_codec_without_dictionary_never_samples() -> None:
    codec = Codec(dictionary=False)
    for i in range(2000):
        codec.encode(_similar(i))
    assert not codec.wants_dictionary()


def test_large_payloads_use_their_own_level() -> None:
    value = [{"i": i, "text": f"message {i} " + "lorem ipsum dolor " * (i % 7)} for i in range(800)]
    fast, strong = Codec(), Codec(large_level=19)
    assert fast.large_level == 1
    a, b = fast.encode(value), strong.encode(value)
    assert len(b) < len(a) < len(orjson.dumps(value)) // 3
    assert fast.decode(b) == strong.decode(a) == value


@pytest.mark.parametrize("with_dictionary", [False, True])
def test_many_short_lived_threads_share_the_codec_safely(with_dictionary: bool) -> None:
    # zstd contexts are reused across threads (an executor's threads come and go); no
    # context may serve two threads at once, or frames would be garbled.
    import threading

    codec = Codec()
    if with_dictionary:
        codec, data = _trained()
        codec.add_dictionary(1, data)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(200):
                value = {"t": seed, "i": i, "text": f"thread {seed} line {i} " * 20}
                frame = codec.encode(value)
                assert (frame[0] & 0x30 == ZSTD_DICT) == with_dictionary
                assert codec.decode(frame) == value
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    for _ in range(3):  # rounds of fresh threads, like an executor's
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def _frames_of_every_kind() -> list[bytes]:
    """A plain JSON frame, a plain raw one, a zstd one and a zstd-with-dictionary one."""
    codec, data = _trained()
    codec.add_dictionary(3, data)
    return [
        Codec().encode({"a": 1}),
        Codec().encode(b"raw bytes"),
        Codec(compress_threshold=16, dictionary=False).encode({"text": "word " * 200}),
        codec.encode(_similar(1)),
    ]


def test_every_flipped_bit_is_detected_or_harmless() -> None:
    """Bit rot: a frame with any one bit flipped decodes to the original value (a bit
    zstd ignores) or raises CorruptValueError; it never decodes to another value."""
    from tieredmem.errors import CorruptValueError

    codec, data = _trained()
    codec.add_dictionary(3, data)
    frames = _frames_of_every_kind()
    originals = [codec.decode(f) for f in frames]
    for frame, original in zip(frames, originals):
        assert frame[0] & CHECKED
        for i in range(len(frame)):
            for bit in range(8):
                damaged = bytearray(frame)
                damaged[i] ^= 1 << bit
                try:
                    value = codec.decode(bytes(damaged))
                except CorruptValueError:
                    continue
                assert value == original, (i, bit)


def test_frames_written_before_checksums_still_read() -> None:
    """Frames of the first frame format (no CHECKED bit, no CRC, no zstd checksum)."""
    import zstandard

    payload = orjson.dumps({"old": "value " * 100})
    old = [
        bytes((JSON,)) + b'{"a":1}',
        bytes((RAW,)) + b"raw",
        bytes((JSON | ZSTD,)) + zstandard.ZstdCompressor(level=3).compress(payload),
    ]
    codec = Codec()
    assert [codec.decode(f) for f in old] == [{"a": 1}, b"raw", orjson.loads(payload)]
