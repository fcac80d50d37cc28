"""The chat database: the contract (``contract.ChatStore``) and its backends.

``open_store(url)`` opens one; today the one backend is the JSON folder
(``jsonfile``). Everything the rest of the program imports from here:
``Store``, ``StoreCorrupt``, ``User``, the file names, ``open_store``.
"""
from __future__ import annotations

import os
from typing import Any, Union

from .contract import (
    BatchListener,
    ChatStore,
    DurableListener,
    Outcome,
    Room,
    SendRequest,
    StoreCorrupt,
    User,
)
from .jsonfile import COMPACT_MIN_BYTES, Store
from .jsonfile.bodies import CACHE_BYTES
from .jsonfile.journal import BACKOFF_MAX, BACKOFF_MIN, DISK_BUSY, DISK_LOST
from .jsonfile.records import ACCOUNTS_FILE, JOURNAL_FILE, USERS_FILE
from .jsonfile.snapshot import DOC_VERSION

__all__ = ["ACCOUNTS_FILE", "BACKOFF_MAX", "BACKOFF_MIN", "BatchListener", "CACHE_BYTES",
           "COMPACT_MIN_BYTES", "ChatStore", "DISK_BUSY", "DISK_LOST", "DOC_VERSION",
           "DurableListener", "JOURNAL_FILE", "Outcome", "Room", "SendRequest", "Store",
           "StoreCorrupt", "USERS_FILE", "User", "open_store"]

_JSON_SCHEMES = ("json:", "file:")


def open_store(url: Union[str, "os.PathLike[str]"], **options: Any) -> Store:
    """Open the store ``url`` names: a folder path, or ``json:<folder>`` / ``file:<folder>``.

    ``options`` go to the backend (``files``, ``clock`` ...). Another scheme
    (``postgresql://``) is refused with ValueError: no other backend is built in.
    """
    text = os.fspath(url)
    for scheme in _JSON_SCHEMES:
        if text.startswith(scheme):
            text = text[len(scheme):]
            if text.startswith("//"):
                text = text[2:]
            break
    else:
        if "://" in text:
            raise ValueError(f"no store backend for {text.split('://', 1)[0]!r} URLs")
    return Store(text, **options)
