"""A Redis URL's password never shows: not in ``Store.url``, ``repr``, ``stats()``, error
messages or log records; a refused password fails at once, a malformed URL and an
unreachable server raise typed errors saying what to do, and retries are logged
(issues #15 "Secrets and privacy" and #14 "Small things users trip on")."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterator

import pytest

import tieredmem
from tieredmem import BackendUnavailableError, TieredMemError, UnsupportedURLError
from tieredmem.backends import redact_url

from .conftest import RedisServer, _free_port

SECRET = "hunter2-Zq9"


@pytest.fixture(scope="module")
def locked_redis() -> Iterator[RedisServer]:
    """A real redis-server that requires a password."""
    pytest.importorskip("redis")
    server = RedisServer(password=SECRET)
    yield server
    server.stop()


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # every logger, redis-py's included
    return caplog


def _no_secret(text: str) -> None:
    assert SECRET not in text, text


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)


def test_redact_url_hides_passwords_only() -> None:
    assert redact_url(f"redis://:{SECRET}@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url(f"redis://bob:{SECRET}@h/1") == "redis://bob:***@h/1"
    assert redact_url(f"rediss://{SECRET}@h") == "rediss://***@h"
    assert redact_url(f"redis://h/0?password={SECRET}&prefix=a:") == (
        "redis://h/0?password=***&prefix=a:"
    )
    assert redact_url("redis://h:6379/0?prefix=tm:") == "redis://h:6379/0?prefix=tm:"
    assert redact_url("/tmp/agent.db") == "/tmp/agent.db"
    _no_secret(redact_url(f"redis://:{SECRET}@[::1"))  # unparsable: still hidden


def test_password_never_shows_on_a_working_store(
    locked_redis: RedisServer, all_logs: pytest.LogCaptureFixture
) -> None:
    url = locked_redis.url("sec:")
    assert SECRET in url
    with tieredmem.open(url, maintenance_interval=0) as store:
        store.put(("a",), "k", {"v": 1})
        assert store.get(("a",), "k").value == {"v": 1}  # type: ignore[union-attr]
        assert store.url == f"redis://:***@127.0.0.1:{locked_redis.port}/0"
        _no_secret(repr(store))
        stats = store.stats()
        _no_secret(stats["url"])
        _no_secret(repr(stats))
        _no_secret(str(stats.as_dict()))
    with pytest.raises(tieredmem.StoreClosedError) as info:
        store.get(("a",), "k")
    _no_secret(str(info.value))
    _no_secret(_logged(all_logs))


def test_wrong_or_missing_password_fails_at_once_with_a_typed_error(
    locked_redis: RedisServer, all_logs: pytest.LogCaptureFixture
) -> None:
    for url in (
        f"redis://:wrong-{SECRET}@127.0.0.1:{locked_redis.port}/0",
        f"redis://127.0.0.1:{locked_redis.port}/0",
    ):
        start = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="check the password") as info:
            tieredmem.open(url)
        assert time.monotonic() - start < 2.0  # not retried like a dropped connection
        assert isinstance(info.value, ConnectionError)
        _no_secret(str(info.value))
        _no_secret("".join(traceback.format_exception(info.value)))
    _no_secret(_logged(all_logs))


def test_unreachable_server_logs_its_retries_and_raises_a_typed_error(
    all_logs: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("redis")
    url = f"redis://:{SECRET}@127.0.0.1:{_free_port()}/0"  # nothing listens there
    with pytest.raises(BackendUnavailableError, match="check that redis-server is running") as info:
        tieredmem.open(url)
    _no_secret(str(info.value))
    _no_secret("".join(traceback.format_exception(info.value)))
    logged = _logged(all_logs)
    _no_secret(logged)
    retries = [
        r for r in all_logs.records if r.name == "tieredmem.backends.redis" and "retry" in r.message
    ]
    assert len(retries) >= 6 and all(r.levelno == logging.WARNING for r in retries)
    assert "redis://:***@127.0.0.1" in logged


def test_operation_errors_after_the_server_goes_away_hide_the_password(
    all_logs: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("redis")
    server = RedisServer(password=SECRET)
    try:
        store = tieredmem.open(server.url("gone:"), maintenance_interval=0)
        store.put(("a",), "k", 1)
        server.stop()
        with pytest.raises(BackendUnavailableError, match="did not complete") as info:
            store.put(("a",), "k", 2)
        _no_secret(str(info.value))
        _no_secret("".join(traceback.format_exception(info.value)))  # chained errors too
        _no_secret(repr(store))
        store.close()
    finally:
        server.stop()
    _no_secret(_logged(all_logs))


@pytest.mark.parametrize("port", ["abc", "99999999", "-1"])
def test_malformed_port_is_a_typed_error(port: str) -> None:
    pytest.importorskip("redis")
    with pytest.raises(UnsupportedURLError, match="malformed Redis URL") as info:
        tieredmem.open(f"redis://:{SECRET}@127.0.0.1:{port}/0")
    assert isinstance(info.value, ValueError)
    _no_secret(str(info.value))


def test_unknown_scheme_error_hides_the_password() -> None:
    with pytest.raises(UnsupportedURLError) as info:
        tieredmem.open(f"nosuch://:{SECRET}@host/0")
    _no_secret(str(info.value))
    assert isinstance(info.value, TieredMemError)
