"""Sending and reading messages: the rules that need the journal, the indexes, the
bodies, the nonces and the accounts' state together.

Who may see what: a user sees its own direct messages (sent or received) and
every message of the rooms it is a member of now, from the room's creation
on. ``history``, ``search`` and ``reply_to`` all go by that one rule
(``_visible_arrays``), and show durable messages only.
"""
from __future__ import annotations

import json
import logging
import threading
from bisect import bisect_left
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple, Union

from ... import protocol as p
from ...protocol import message_json
from ..contract import BatchListener
from .bodies import BodyCache
from .indexes import Indexes, Replay, Route, contains, page, take_newest
from .journal import DISK_LOST, MessageJournal, Submitted
from .nonces import NonceBook
from .records import message_line, nonce_json
from .state import AccountState, room_conv

log = logging.getLogger(__name__)

#: How many ids a search reads at a time (without the lock between chunks).
SEARCH_CHUNK = 256
#: How many direct-message recipients are kept resolved before the cache starts again.
_ROUTES_KEPT = 100_000
#: What a send that failed for an unexpected reason (a bug, logged) is answered with.
_FAILED = "the server failed on this request; it was logged"


class _OnDisk(NamedTuple):
    """A resend whose stored message must be read back from the journal."""

    msg_id: int
    lookup: Any

class Messages:
    """The message operations of the store; the state of every part is guarded by ``lock``."""

    def __init__(self, lock: threading.Lock, journal: MessageJournal, bodies: BodyCache,
                 index: Indexes, state: AccountState, clock: Callable[[], float]) -> None:
        self._lock = lock
        self._journal = journal
        self._bodies = bodies
        self._index = index
        self._state = state
        self._clock = clock
        self._nonces = NonceBook()
        self._sent = index.sent
        #: (sender key, recipient as sent) -> (key, canonical name, route) of a direct message
        self._dm_routes: Dict[Tuple[str, str], Tuple[str, str, Route]] = {}
        self._batch_listener: Optional[BatchListener] = None

    def replayer(self, path: str) -> Replay:
        """Replay's callback for the message journal: indexes and nonces."""
        huge = 1 << 62      # at replay, every message is durable

        def on_nonce(skey: str, nonce: bytes, msg_id: int) -> None:
            self._nonces.add(skey, hash(nonce), msg_id, huge)

        return self._index.replayer(self._state, path, on_nonce)

    # ------------------------------------------------------------ sending

    def append(self, sender: str, to: str, text: str, reply_to: Optional[int] = None,
               nonce: Optional[str] = None) -> Tuple[int, str, bool]:
        """Assign the next id and queue the message: (id, message JSON, fresh).

        ``to`` is a user or a room (its canonical name goes in the message's
        ``to``). With a ``nonce`` the sender used before, nothing is stored:
        the answer is the message stored for it (durable or on its way,
        whatever its ``to`` and text) with fresh=False. Not durable until
        ``wait_durable(id)``. ChatError(unknown_user; unknown_room,
        not_a_member for a room; unknown_message when ``reply_to`` is not a
        message the sender can see; server_error when closed or for a while
        after the disk refused a write).
        """
        with self._lock:
            outcome = self._append_locked(sender, to, text, reply_to, nonce)
        self._journal.wake()
        return self._finish(outcome)

    def append_many(self, sends: List[Tuple[str, str, str, Optional[int], Optional[str]]]
                    ) -> List[Union[Tuple[int, str, bool], p.ChatError]]:
        """``append`` for each of ``sends`` (sender, to, text, reply_to, nonce) under
        one taking of the lock, as the committer stores a submitted batch. The
        outcome of each, in order: its result or its ChatError.
        """
        with self._lock:
            outcomes = self.admit([(None, sends)])[0]
        self._journal.wake()
        return [o if isinstance(o, p.ChatError) else self._finish(o) for o in outcomes]

    # ------------------------------------------------------------ submitted batches

    def set_batch_listener(self, listener: BatchListener) -> None:
        self._batch_listener = listener

    def admit(self, taken: List[Submitted]) -> List[List[Any]]:
        """Queue every send of a round's batches (the committer, the lock held): for each
        batch, each send's result, its ChatError, or a body to read after the lock."""
        append = self._append_locked
        rounds: List[List[Any]] = []
        for _token, sends in taken:
            outcomes: List[Any] = []
            for send in sends:
                try:
                    outcomes.append(append(*send))
                except p.ChatError as exc:
                    outcomes.append(exc)
                except Exception:   # a bug must cost one send, never the committer
                    log.exception("error storing a message from %r", send[0])
                    outcomes.append(p.ChatError(p.SERVER_ERROR, _FAILED))
            rounds.append(outcomes)
        return rounds

    def round_done(self, taken: List[Submitted], rounds: List[List[Any]],
                   failed: Optional[range]) -> None:
        """Finish a round's outcomes and hand them to the batch listener (the committer,
        without the lock): a resend's body read from disk, a lost send's error."""
        done = []
        for (token, _), outcomes in zip(taken, rounds):
            for i, outcome in enumerate(outcomes):
                if type(outcome) is tuple:
                    if failed is not None and outcome[0] in failed:
                        outcomes[i] = p.ChatError(p.SERVER_ERROR, DISK_LOST)
                elif isinstance(outcome, _OnDisk):
                    try:
                        outcomes[i] = self._finish(outcome)
                    except Exception:
                        log.exception("error reading message %d back", outcome.msg_id)
                        outcomes[i] = p.ChatError(p.SERVER_ERROR, _FAILED)
            done.append((token, outcomes))
        if self._batch_listener is not None:
            self._batch_listener(done)

    def _append_locked(self, sender: str, to: str, text: str, reply_to: Optional[int],
                       nonce: Optional[str]) -> Any:
        """Assign the next id, file and queue one message (the lock is held): the
        result, or a body lookup to finish outside the lock (a resend whose
        message is on disk).

        This runs once per message sent, on the committer's thread: it is
        written flat, with the direct-message recipient resolved once per
        (sender, recipient) and kept (accounts are never renamed or removed).
        """
        journal = self._journal
        if journal.refusing:
            journal.check_open()
            journal.check_backoff()
        skey = sender.lower()   # protocol.user_key, inline
        srec = self._state.accounts.get(skey)
        if srec is None:
            raise p.ChatError(p.UNKNOWN_USER, f"there is no user {sender[:40]!r}")
        nonce_raw = digest = None
        if nonce is not None:
            nonce_raw = nonce_json(nonce)
            digest = hash(nonce_raw)
            sent = self._nonces.find(skey, digest)
            if sent is not None:
                body = journal.unwritten.get(sent)
                if body is not None:
                    return sent, body, False
                return _OnDisk(sent, self._bodies.from_cache([sent]))
        known = self._dm_routes.get((skey, to))
        if known is None:
            tkey, to_name, route = self._recipient(skey, to)
            if tkey[:1] == "#":   # protocol.is_room, inline
                index = self._index
                route += index.mention_route(room_conv(tkey),
                                             index.mentioned(text, skey, self._state))
            else:
                if len(self._dm_routes) >= _ROUTES_KEPT:   # case variants cannot grow it
                    self._dm_routes.clear()
                self._dm_routes[(skey, to)] = tkey, to_name, route
        else:
            tkey, to_name, route = known
        if reply_to is not None and not self._can_see(skey, reply_to):
            raise p.ChatError(p.UNKNOWN_MESSAGE, f"you have no message {reply_to} to reply to")
        msg_id = journal.last_id + 1
        body = message_json(msg_id, srec.name, to_name, text, self._clock(), reply_to)
        raw = body.encode("ascii")
        size = len(raw)
        journal.queue(msg_id, message_line(raw, nonce_raw), body,
                      (route, skey, size, digest is not None))
        for ids in route:      # Indexes.file, inline
            ids.append(msg_id)
        sent_bytes = self._sent
        sent_bytes[skey] = sent_bytes.get(skey, 0) + size
        if digest is not None:
            self._nonces.add(skey, digest, msg_id, journal.durable_id)
        return msg_id, body, True

    def _finish(self, outcome: Any) -> Tuple[int, str, bool]:
        """A result as it is; a resend's body read from disk (without the lock)."""
        if isinstance(outcome, _OnDisk):
            return outcome.msg_id, self._bodies.fetch(outcome.lookup)[0], False
        return outcome

    def _recipient(self, skey: str, to: str) -> Tuple[str, str, Tuple]:
        """(key, canonical name, route) of a message's recipient; the lock is held."""
        if to[:1] == "#":   # protocol.is_room, inline (once per message)
            room = self._state.member_room(skey, to)
            tkey = room.name.lower()
            return tkey, room.name, self._index.route(skey, tkey)
        trec = self._state.accounts.get(p.user_key(to))
        if trec is None:
            raise p.ChatError(p.UNKNOWN_USER, f"there is no user {to[:40]!r}")
        tkey = p.user_key(to)
        return tkey, trec.name, self._index.route(skey, tkey)

    def unfile(self, msg_id: int, undo: Any) -> None:
        """Take a lost message back out of every index (the journal's ``on_lost``)."""
        route, skey, size, had_nonce = undo    # as ``_append_locked`` queued it
        self._index.unfile(msg_id, route, skey, size)
        if had_nonce:
            self._nonces.forget_last(skey, msg_id)

    # ------------------------------------------------------------ visibility

    def _visible_arrays(self, ukey: str) -> List:
        """The id arrays of everything ``ukey`` may see; the lock is held."""
        index = self._index
        arrays = [index.by_user[ukey]] if ukey in index.by_user else []
        for rkey in self._state.member_of.get(ukey, ()):
            ids = index.conversation(room_conv(rkey))
            if ids:
                arrays.append(ids)
        return arrays

    def _can_see(self, ukey: str, msg_id: int) -> bool:
        """Whether ``msg_id`` is one of ``ukey``'s direct messages or in one of its rooms."""
        return any(contains(ids, msg_id) for ids in self._visible_arrays(ukey))

    def _arrays(self, ukey: str, with_user: Optional[str], strict: bool) -> List:
        """The arrays of the conversation with ``with_user`` (a user or a room), or of
        all ``ukey`` sees; the lock is held. ChatError(unknown_room, not_a_member);
        ChatError(unknown_user) for an unknown user only when ``strict``."""
        if with_user is None:
            return self._visible_arrays(ukey)
        if p.is_room(with_user):
            conv = room_conv(self._state.member_room(ukey, with_user).name.lower())
        else:
            if strict:
                self._state.key_of(with_user)
            conv = p.conversation_key(ukey, with_user)
        ids = self._index.conversation(conv)
        return [ids] if ids else []

    # ------------------------------------------------------------ reading

    def history_page(self, user: str, with_user: Optional[str] = None,
                     after: Optional[int] = None, before: Optional[int] = None,
                     limit: int = p.DEFAULT_HISTORY_LIMIT) -> Tuple[List[str], bool]:
        """A page of message JSON strings ``user`` may see, ascending, durable only, and
        whether more lie beyond it in the paging direction.

        With ``after``: the oldest ``limit`` above it (``before`` is then not
        used), more = newer ones exist. Otherwise the newest ``limit`` (below
        ``before`` when given), more = older ones exist. ``with_user`` narrows
        it to one conversation (a user: nothing if there is no such user; a
        room: ChatError(unknown_room, not_a_member)); without it, the user's
        direct messages and the messages of every room it is in now.
        """
        if limit <= 0:
            return [], False
        ukey = p.user_key(user)
        with self._lock:
            arrays = self._arrays(ukey, with_user, strict=False)
            ids, more = page(arrays, self._journal.durable_id, after, before, limit)
            lookup = self._bodies.from_cache(ids)
        return self._bodies.fetch(lookup), more

    def search(self, user: str, query: str, with_user: Optional[str] = None,
               before: Optional[int] = None, limit: int = p.DEFAULT_SEARCH_LIMIT
               ) -> Tuple[List[str], bool]:
        """The newest ``limit`` messages ``user`` may see whose text contains ``query``
        (case-insensitively, by ``str.casefold``), below ``before`` when given,
        ascending; and whether older matches exist.

        Reads bodies a chunk at a time without the lock between chunks, and
        without filling the cache. ChatError(unknown_user, unknown_room, not_a_member).
        """
        if limit <= 0:
            return [], False
        wanted = query.casefold()
        ukey = p.user_key(user)
        with self._lock:
            arrays = self._arrays(ukey, with_user, strict=True)
            bound = self._journal.durable_id + 1
            if before is not None:
                bound = min(bound, before)
            tops = [bisect_left(ids, bound) for ids in arrays]
        found: List[str] = []
        while len(found) <= limit:
            with self._lock:
                chunk = take_newest(arrays, tops, SEARCH_CHUNK)
                if not chunk:
                    break
                lookup = self._bodies.from_cache(chunk[::-1])
            for body in reversed(self._bodies.fetch(lookup, remember=False)):
                if wanted in json.loads(body)["text"].casefold():
                    found.append(body)
                    if len(found) > limit:
                        break
        return found[:limit][::-1], len(found) > limit

    def get_message(self, msg_id: int) -> Optional[p.Message]:
        """A durable message by id, or None."""
        with self._lock:
            if not 1 <= msg_id <= self._journal.durable_id or self._journal.where[msg_id - 1] < 0:
                return None
            lookup = self._bodies.from_cache([msg_id])
        return p.Message.from_dict(json.loads(self._bodies.fetch(lookup)[0]))

    def room_counts(self, user: str, room: str) -> Tuple[int, int]:
        """(unread, mentions): the room's durable messages from others above ``user``'s
        marker in it, and those of them that mention ``user``; (0, 0) for a
        non-member. ChatError(unknown_room)."""
        ukey = p.user_key(user)
        with self._lock:
            rkey = self._state.room_of(room).name.lower()
            if ukey not in self._state.rooms[rkey].members:
                return 0, 0
            conv = room_conv(rkey)
            return self._index.room_unread(ukey, conv, self._state.marker(ukey, conv),
                                           self._journal.durable_id)

