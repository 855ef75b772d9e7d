"""The checkpoint serializer of :class:`~tieredmem.langgraph.TieredSaver` and
:class:`~tieredmem.langgraph.TieredCache`: LangGraph's own format, read through an
allow-list.

LangGraph's ``JsonPlusSerializer`` writes objects as msgpack extensions that name a
module and a callable (``("uuid", "UUID", "...")``), and by default imports and calls
whatever a stored checkpoint names, so a file or a server someone else can write to could
make a read run ``os.system``.  :class:`CheckpointSerializer` writes the same bytes (the
files stay readable by LangGraph's savers and back), but reading imports and calls only
what :data:`DEFAULT_ALLOWED` and the types the user registers name; anything else raises
:class:`~tieredmem.CheckpointTypeError` before a module is imported, naming the type and
how to allow it::

    TieredSaver("agent.db", allowed_types=[MyState, ("my.module", "MyEnum")])

Pickle payloads are refused whatever the list says.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from typing import Any

import ormsgpack
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from ..errors import CheckpointTypeError, SerializationError

__all__ = [
    "DEFAULT_ALLOWED",
    "DEFAULT_METHODS",
    "AllowedTypes",
    "CheckpointSerializer",
    "serializer",
    "type_key",
]

#: What ``allowed_types=`` takes: classes or ``(module, name)`` pairs.
AllowedTypes = Iterable["type | tuple[str, str]"]

log = logging.getLogger(__name__)

#: ``(module, name)`` of what a checkpoint may name by default: the standard library's
#: data types that LangGraph's serializer writes, LangChain's messages and document,
#: and LangGraph's own types.  Nothing here runs code beyond building a value.
DEFAULT_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("zoneinfo", "ZoneInfo"),
        ("uuid", "UUID"),
        ("decimal", "Decimal"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("collections", "deque"),
        ("ipaddress", "IPv4Address"),
        ("ipaddress", "IPv4Interface"),
        ("ipaddress", "IPv4Network"),
        ("ipaddress", "IPv6Address"),
        ("ipaddress", "IPv6Interface"),
        ("ipaddress", "IPv6Network"),
        ("pathlib", "Path"),
        ("pathlib", "PosixPath"),
        ("pathlib", "WindowsPath"),
        ("pathlib._local", "Path"),
        ("pathlib._local", "PosixPath"),
        ("pathlib._local", "WindowsPath"),
        ("re", "compile"),
        ("langchain_core.messages.base", "BaseMessage"),
        ("langchain_core.messages.base", "BaseMessageChunk"),
        ("langchain_core.messages.human", "HumanMessage"),
        ("langchain_core.messages.human", "HumanMessageChunk"),
        ("langchain_core.messages.ai", "AIMessage"),
        ("langchain_core.messages.ai", "AIMessageChunk"),
        ("langchain_core.messages.system", "SystemMessage"),
        ("langchain_core.messages.system", "SystemMessageChunk"),
        ("langchain_core.messages.chat", "ChatMessage"),
        ("langchain_core.messages.chat", "ChatMessageChunk"),
        ("langchain_core.messages.tool", "ToolMessage"),
        ("langchain_core.messages.tool", "ToolMessageChunk"),
        ("langchain_core.messages.function", "FunctionMessage"),
        ("langchain_core.messages.function", "FunctionMessageChunk"),
        ("langchain_core.messages.modifier", "RemoveMessage"),
        ("langchain_core.documents.base", "Document"),
        ("langgraph.types", "Send"),
        ("langgraph.types", "Interrupt"),
        ("langgraph.types", "Command"),
        ("langgraph.types", "Overwrite"),
        ("langgraph.types", "TimeoutPolicy"),
        ("langgraph.types", "PregelTask"),
        ("langgraph.types", "StateSnapshot"),
        ("langgraph.store.base", "Item"),
        ("langgraph.store.base", "GetOp"),
    }
)

#: ``(module, name, method)`` of the class methods a checkpoint may call by default.
DEFAULT_METHODS: frozenset[tuple[str, str, str]] = frozenset(
    {("datetime", "datetime", "fromisoformat")}
)

# LangGraph's msgpack extension codes (langgraph.checkpoint.serde.jsonplus).
_ONE_ARG, _POS_ARGS, _KW_ARGS, _METHOD, _PYDANTIC_V1, _PYDANTIC_V2 = range(6)
_NUMPY, _DELTA = 6, 7
_OPTION = ormsgpack.OPT_NON_STR_KEYS
#: Callables already resolved, by ``(module, name)`` (only ever filled after the
#: allow-list admitted them; what ``importlib`` would return again).
_TARGETS: dict[tuple[str, str], Any] = {}


def type_key(t: type | tuple[str, str]) -> tuple[str, str]:
    """``(module, name)`` of a class, or of a ``(module, name)`` pair as given.

    :raises TypeError: anything else.
    """
    if isinstance(t, type):
        return (t.__module__, t.__name__)  # what LangGraph's serializer writes
    if isinstance(t, tuple) and len(t) == 2 and all(isinstance(part, str) and part for part in t):
        return (t[0], t[1])
    raise TypeError(f"allowed_types takes classes or (module, name) pairs, not {t!r}")


class _Reader:
    """One read: the extension hook, and the refusal it raised (ormsgpack replaces an
    exception raised in a hook by a plain ``ValueError``, so it is kept here)."""

    __slots__ = ("allowed", "error", "hook_fn", "strict")

    def __init__(self, allowed: frozenset[tuple[str, str]], strict: JsonPlusSerializer):
        self.allowed = allowed
        self.strict = strict  # LangGraph's reader, strict, with the same allow-list
        self.error: CheckpointTypeError | None = None
        self.hook_fn = self.hook

    def refuse(self, what: str, how: str) -> CheckpointTypeError:
        self.error = CheckpointTypeError(
            f"the checkpoint names {what}, which is not in the serializer's allow-list, so "
            f"it was not imported or called; if you trust it, allow it with {how}"
        )
        return self.error

    def unpack(self, data: bytes) -> Any:
        try:
            return ormsgpack.unpackb(data, ext_hook=self.hook_fn, option=_OPTION)
        except ValueError:  # ormsgpack's "ext_hook failed" (or damaged data)
            if self.error is not None:
                raise self.error from None
            raise

    def hook(self, code: int, data: bytes) -> Any:
        if code in (_DELTA, _NUMPY):
            # Check what a delta snapshot holds, then let LangGraph's strict reader, with
            # the same allow-list, build it (a numpy array imports only numpy).
            if code == _DELTA:
                ormsgpack.unpackb(data, ext_hook=self.hook_fn, option=_OPTION)
            packed = ormsgpack.packb(ormsgpack.Ext(code, data))
            return JsonPlusSerializer.loads_typed(self.strict, ("msgpack", packed))
        if code > _PYDANTIC_V2:
            raise self.refuse(f"msgpack extension {code}", "a serializer that knows it")
        # A refusal inside surfaces here as ormsgpack's ValueError; unpack() re-raises it.
        tup = ormsgpack.unpackb(data, ext_hook=self.hook_fn, option=_OPTION)
        module, name, arg = tup[0], tup[1], tup[2]
        if code == _METHOD:
            if (module, name, tup[3]) not in DEFAULT_METHODS:
                raise self.refuse(
                    f"the method {module}.{name}.{tup[3]}", "a serializer of your own (serde=)"
                )
        elif (module, name) not in self.allowed:
            raise self.refuse(
                f"the type {module}.{name}",
                f"TieredSaver(..., allowed_types=[{name}]) or "
                f"allowed_types=[({module!r}, {name!r})]",
            )
        try:
            target = _TARGETS.get((module, name))
            if target is None:
                target = _TARGETS[(module, name)] = getattr(importlib.import_module(module), name)
            if code == _ONE_ARG:
                return target(arg)
            if code == _POS_ARGS:
                if (module, name) == ("langgraph.types", "Send") and len(arg) == 3:
                    return target(arg[0], arg[1], timeout=arg[2])
                return target(*arg)
            if code == _METHOD:
                return getattr(target, tup[3])(arg)
            if code == _KW_ARGS:
                return target(**arg)
            try:  # pydantic: validate, else build as stored (a field that changed type)
                return target(**arg)
            except Exception:
                build = "model_construct" if code == _PYDANTIC_V2 else "construct"
                return getattr(target, build)(**arg)
        except Exception as exc:
            # As LangGraph does: an allowed type that cannot be rebuilt (its signature
            # changed since the checkpoint was written) comes back as its stored data.
            log.warning(
                "could not rebuild %s.%s from a checkpoint (%s); returning its stored data",
                module,
                name,
                type(exc).__name__,
            )
            return arg


class CheckpointSerializer(JsonPlusSerializer):
    """LangGraph's ``JsonPlusSerializer`` (it writes the same bytes) whose reads import
    and call only allowed types: :data:`DEFAULT_ALLOWED` plus *allowed_types*.

    :param allowed_types: classes (pydantic models, dataclasses, enums, named tuples) or
        ``(module, name)`` pairs that checkpoints may name besides the defaults.
    :raises CheckpointTypeError: (on read) a checkpoint names anything else, or holds a
        pickle.

    >>> from uuid import UUID
    >>> serde = CheckpointSerializer()
    >>> serde.loads_typed(serde.dumps_typed({"id": UUID(int=1)}))
    {'id': UUID('00000000-0000-0000-0000-000000000001')}
    """

    def __init__(self, *, allowed_types: AllowedTypes = ()) -> None:
        #: What checkpoints may name (``(module, name)`` pairs).
        self.allowed = DEFAULT_ALLOWED | frozenset(type_key(t) for t in allowed_types)
        super().__init__(allowed_msgpack_modules=tuple(sorted(self.allowed)))

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        """Decode ``(type, bytes)`` as ``JsonPlusSerializer`` does, through the allow-list.

        :raises CheckpointTypeError: the data names a type outside the allow-list or is a
            pickle.
        :raises SerializationError: the data is damaged.
        """
        kind, raw = data
        if kind == "msgpack":
            try:
                return _Reader(self.allowed, self).unpack(raw)
            except CheckpointTypeError:
                raise
            except ValueError as exc:
                raise SerializationError(f"damaged checkpoint data: {exc}") from None
        if kind in ("null", "bytes", "bytearray", "json"):
            # "json": LangGraph's reviver builds only LangChain's serializable classes.
            return super().loads_typed(data)
        raise CheckpointTypeError(
            f"the checkpoint holds {kind!r} data, which this serializer never reads "
            "(pickle can run any code); pass a serializer of your own (serde=) if you "
            "wrote it and trust the file"
        )


def serializer(serde: SerializerProtocol | None, allowed_types: AllowedTypes) -> SerializerProtocol:
    """The serializer a saver or cache uses: *serde* if given, else a
    :class:`CheckpointSerializer` allowing *allowed_types* too.

    :raises ValueError: both were given (a serializer of one's own has its own rules).
    """
    allowed = list(allowed_types)
    if serde is None:
        return CheckpointSerializer(allowed_types=allowed)
    if allowed:
        raise ValueError(
            "pass allowed_types= or serde=, not both: allowed_types configures the default "
            "serializer; with serde= your serializer decides what it reads"
        )
    return serde
