"""zstd dictionaries of a store: loaded from the cold tier when it opens, trained once
(in a background thread) after enough values were written, then stored for every later
open and every other process (see :mod:`tieredmem.codec`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .backends import Backend
from .codec import Codec

__all__ = ["Dictionaries"]

log = logging.getLogger(__name__)


class Dictionaries:
    """The zstd dictionaries of *codec*, kept in *backend*; *emit* reports a new one."""

    def __init__(self, codec: Codec, backend: Backend, emit: Callable[..., None]) -> None:
        self._codec, self._backend, self._emit = codec, backend, emit
        self._training = False
        if not hasattr(backend, "add_dictionary"):  # a third-party backend without them
            codec.disable_sampling()
            return
        codec.set_loader(backend.dictionary)
        for dict_id, data in sorted(backend.dictionaries().items()):
            codec.add_dictionary(dict_id, data)

    def after_write(self) -> None:
        """Start training once the codec has seen enough values (once per store)."""
        if self._training or not self._codec.wants_dictionary():
            return
        self._training = True
        threading.Thread(target=self._train, name="tieredmem-zstd-dict", daemon=True).start()

    def _train(self) -> None:
        started = time.perf_counter()
        data = self._codec.train()
        if data is None:
            return
        try:
            dict_id = self._backend.add_dictionary(data)
        except Exception:  # closed meanwhile, or the file is read-only: no dictionary
            log.debug("storing a zstd dictionary in %s failed", self._backend.url, exc_info=True)
            return
        self._codec.add_dictionary(dict_id, data)
        fields: dict[str, Any] = {"id": dict_id, "bytes": len(data)}
        self._emit("dictionary", seconds=time.perf_counter() - started, **fields)
