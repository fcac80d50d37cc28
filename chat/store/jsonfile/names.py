"""New names: which are free, which are too like an account's, and which are on their way.

A sign-up is shown only once durable, but two sign-ups for one name must not
both be written meanwhile: a name on its way is reserved here until its
change is settled (``release``). Guarded by the store's lock.
"""
from __future__ import annotations

from typing import Dict

from ... import protocol as p
from .state import AccountState


class NameBook:
    """Reservations of new account names, and the look-alike rule."""

    def __init__(self, state: AccountState) -> None:
        self._state = state
        self._users: Dict[str, str] = {}       # key -> name, for sign-ups on their way
        self._skeletons: Dict[str, str] = {}   # skeleton -> name, for sign-ups on their way

    def reserve_user(self, name: str) -> None:
        """Reserve a new account name; ChatError(username_taken) if it is not free."""
        key, skeleton = p.user_key(name), p.name_skeleton(name)
        if key in self._state.accounts or key in self._users:
            raise p.ChatError(p.USERNAME_TAKEN, f"the name {name!r} is taken")
        self._refuse_lookalike(name, skeleton)
        self._users[key] = name
        self._skeletons[skeleton] = name

    def release_user(self, name: str) -> None:
        del self._users[p.user_key(name)]
        del self._skeletons[p.name_skeleton(name)]

    def _refuse_lookalike(self, name: str, skeleton: str) -> None:
        """ChatError(username_taken) if ``name`` reads like an existing account's name.

        Someone signing up as ``VlCTlM`` next to ``victim`` could pass for them
        in every list.
        """
        other = self._skeletons.get(skeleton)
        if other is None:
            key = self._state.skeletons.get(skeleton)
            other = None if key is None else self._state.accounts[key].name
        if other is not None:
            raise p.ChatError(p.USERNAME_TAKEN,
                              f"the name {name!r} is too like the existing account {other!r}")
