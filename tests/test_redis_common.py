"""The parts both Redis backends share (tieredmem/backends/_redis_common.py): the row an
item's hash decodes to, the script arguments of each operation, URL options and error
text.  The backends' own behaviour is covered end to end by test_backend_conformance.py,
test_redis_cluster.py and test_secrets.py."""

from __future__ import annotations

import pytest

from tieredmem import BackendUnavailableError, TieredMemError, UnsupportedURLError
from tieredmem.backends import Delete, DeleteRange, Put, Row, Touch
from tieredmem.backends._redis_common import (
    coherence_mode,
    decode_row,
    encode_ops,
    operation_error,
    parse_url,
    scrub,
)


def test_an_empty_hash_is_no_row() -> None:
    assert decode_row("ns", "k", {}) is None


def test_a_hash_decodes_to_its_row() -> None:
    full = {b"v": b"frame", b"c": b"1.5", b"u": b"2.0", b"e": b"9.25", b"t": b"7"}
    assert decode_row("ns", "k", full) == Row("ns", "k", b"frame", 1.5, 2.0, 9.25, 7.0)
    lasting = {b"v": b"frame", b"c": b"1.5", b"u": b"2.0"}
    assert decode_row("ns", "k", lasting) == Row("ns", "k", b"frame", 1.5, 2.0, None, None)


def test_each_operation_has_the_width_the_write_script_steps_by() -> None:
    """WRITE_OPS steps 8 arguments past a put, 3 past a delete, 4 past a range or touch."""
    ops = [
        Put("n", "a", b"f", 1.0),
        Put("n", "b", b"f", 1.0, 5.0, 0.5, ttl=4.0),
        Delete("n", "a"),
        DeleteRange("n", "a"),
        DeleteRange("n", "a", "c"),
        Touch("n", "b", 2.0),
    ]
    assert encode_ops(ops) == [
        *("P", "n", "a", b"f", "1.0", "", "", ""),
        *("P", "n", "b", b"f", "1.0", "5.0", "0.5", "4.0"),
        *("D", "n", "a"),
        *("R", "n", "a", ""),
        *("R", "n", "a", "c"),
        *("T", "n", "b", "2.0"),
    ]


def test_url_options_and_the_shown_url() -> None:
    u = parse_url("rediss://alice:s3cret@h:6380/2?prefix=app:&coherence=tracking")
    assert u.bare == "rediss://alice:s3cret@h:6380/2"
    assert u.shown == "rediss://alice:***@h:6380/2"
    assert (u.prefix, u.password) == ("app:", "s3cret")
    assert u.option("coherence", "strict") == "tracking"
    assert u.option("wait", "0") == "0"
    assert (parse_url("redis://h/0").prefix, parse_url("redis://h/0").password) == ("tm:", "")


def test_coherence_modes() -> None:
    assert coherence_mode("strict") == "strict"
    assert coherence_mode("tracking") == "tracking"
    with pytest.raises(UnsupportedURLError) as caught:
        coherence_mode("eventual")
    assert str(caught.value) == (
        "coherence must be 'strict' or 'tracking' in a Redis URL, not 'eventual'"
    )


def test_errors_are_typed_and_scrubbed() -> None:
    reason = scrub(ConnectionError("AUTH s3cret refused"), "s3cret")
    assert reason == "AUTH *** refused"
    down = operation_error("Redis at redis://h/0", reason, "check the server")
    assert isinstance(down, BackendUnavailableError)
    assert str(down) == (
        "Redis at redis://h/0: AUTH *** refused (the operation did not complete; check the server)"
    )
    other = operation_error("Redis at redis://h/0", "WRONGTYPE", None)
    assert type(other) is TieredMemError
    assert str(other) == "Redis at redis://h/0: WRONGTYPE (the operation did not complete)"
    assert scrub(ValueError("no password"), "") == "no password"
