"""Scrollback in the app: older pages on demand, the originals of replies, jumping to a message.

A mix-in of ``ChatApp`` (like ``RoomCommands``). Every request here runs on a
worker thread (``Fetcher``), so scrolling never waits for the network: the
result comes back as a ``tui.fetched`` event through the client library's
``events`` queue, and the UI thread applies it (``on_fetched_event``), the only
thread that changes the state. Meanwhile the pane says "loading older messages".

What is loaded of a conversation is always one run of its messages up to the
newest (a page older is fetched with ``before`` = the oldest loaded; a jump to
an old message loads forward from it until it meets what was loaded), so the
oldest loaded id is the cursor for the next page and the view never has a gap.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from .. import protocol as p
from ..client import ChatClient
from .conversations import peer_of
from .state import ChatState
from .text import sanitize

log = logging.getLogger(__name__)

#: The event a finished fetch posts to the app's event queue (no server event has a dot).
FETCHED = "tui.fetched"
#: Asked per page; the server cuts a page to fit one frame (about 180 short messages).
PAGE_LIMIT = p.MAX_HISTORY_LIMIT
#: A jump loads at most this many pages forward to meet the loaded run.
MAX_JUMP_PAGES = 200
#: Replies whose originals are fetched per batch.
MAX_QUOTES = 20

Page = Tuple[List[p.Message], bool]


class Fetcher:
    """Runs a request off the UI thread and posts ``{"event": FETCHED, "kind": ..,
    "result": .., "error": ..}`` (with ``info``) when it is done. ``threaded=False`` runs
    it at once, for tests."""

    def __init__(self, post: Callable[[Dict[str, Any]], None], threaded: bool = True) -> None:
        self.post = post
        self.threaded = threaded

    def run(self, kind: str, call: Callable[[], Any], **info: Any) -> None:
        if not self.threaded:
            self._work(kind, call, info)
            return
        threading.Thread(target=self._work, args=(kind, call, info), name=f"chat-{kind}",
                         daemon=True).start()

    def _work(self, kind: str, call: Callable[[], Any], info: Dict[str, Any]) -> None:
        event: Dict[str, Any] = {"event": FETCHED, "kind": kind, "result": None, "error": None,
                                 **info}
        try:
            event["result"] = call()
        except (p.ChatError, ConnectionError, TimeoutError) as exc:
            event["error"] = str(exc)
        except Exception as exc:  # the thread's boundary: said, never raised into nothing
            log.info("a %s request failed", kind, exc_info=True)
            event["error"] = str(exc) or type(exc).__name__
        self.post(event)


def fetch_original(client: ChatClient, msg_id: int, where: Optional[str]) -> Optional[p.Message]:
    """The message ``msg_id`` (the original of a reply): one message of history just
    below ``msg_id + 1``, in the reply's conversation, else in any; None if unseen."""
    for with_user in ([where, None] if where else [None]):
        found, _ = client.history_page(with_user=with_user, before=msg_id + 1, limit=1)
        if found and found[-1].id == msg_id:
            return found[-1]
    return None


def fetch_around(client: ChatClient, with_user: str, msg_id: int,
                 stop_at: Optional[int]) -> Page:
    """A page up to ``msg_id`` and every message after it up to ``stop_at`` (the oldest
    already loaded) or the newest; and whether there are older ones."""
    messages, older = client.history_page(with_user=with_user, before=msg_id + 1,
                                          limit=PAGE_LIMIT)
    after = msg_id
    for _ in range(MAX_JUMP_PAGES):
        if stop_at is not None and after >= stop_at:
            break
        page, more = client.history_page(with_user=with_user, after=after, limit=PAGE_LIMIT)
        messages += page
        if not page or not more:
            break
        after = page[-1].id
    return messages, older


class Scrollback:
    """PgUp/PgDn/End/Home and ↑/↓ in the messages pane, opening a conversation's history,
    replies' originals, and jumping to a message (a search result)."""

    state: ChatState
    client: ChatClient

    def mark_read(self) -> None:            # the app's
        raise NotImplementedError

    def page(self) -> int:                  # the app's: a page of the screen
        raise NotImplementedError

    @property
    def fetcher(self) -> Fetcher:
        fetcher = getattr(self, "_fetcher", None)
        if fetcher is None:
            fetcher = self._fetcher = Fetcher(self.client.events.put)
        return fetcher

    # ------------------------------------------------------------ loading

    def open_history(self) -> None:
        """The newest page of the open conversation, in the background (what is loaded
        already shows meanwhile); then the read marker and replies' originals."""
        state = self.state
        if state.peer is None:
            self.fetch_quotes()
            return
        peer, key = state.peer, state.conversation_key()
        self.fetcher.run("newest", lambda: self.client.history_page(with_user=peer,
                                                                    limit=PAGE_LIMIT), key=key)

    def load_older(self) -> None:
        """The page before the oldest loaded message of the open conversation, unless one
        is on its way or the first message is loaded already."""
        state = self.state
        paging = state.paging()
        if paging.loading or paging.older is False:
            return
        msgs = state.visible_messages()
        before = paging.oldest if state.peer is None and paging.oldest else (
            msgs[0].id if msgs else None)
        if before is None:
            paging.older = False
            return
        paging.loading = True
        peer, key = state.peer, state.conversation_key()
        self.fetcher.run("older", lambda: self.client.history_page(
            with_user=peer, before=before, limit=PAGE_LIMIT), key=key)

    def fetch_quotes(self) -> None:
        """Fetch the originals of replies in view that are not loaded (a page older, or
        in another conversation): the ``↪`` line then shows the author and first words."""
        state = self.state
        asked: Set[int] = self.__dict__.setdefault("_quotes_asked", set())
        wanted = []
        for msg in state.visible_messages():
            rid = msg.reply_to
            if rid is not None and rid not in state.messages and rid not in asked:
                asked.add(rid)
                wanted.append((rid, peer_of(msg, state.me)))
        if not wanted:
            return
        client = self.client
        self.fetcher.run("quotes", lambda: {rid: fetch_original(client, rid, where)
                                            for rid, where in wanted[:MAX_QUOTES]})

    def jump_to(self, msg: p.Message) -> None:
        """Open ``msg``'s conversation with it loaded, selected and in view."""
        state = self.state
        name = peer_of(msg, state.me)
        state.open_conversation(name)
        state.focus = "messages"
        state.select(msg.id)
        if msg.id in state.messages:
            self.mark_read()
            self.open_history()
            return
        loaded = state.visible_messages()
        stop_at = loaded[0].id if loaded else None
        client, key, peer = self.client, state.conversation_key(), state.peer or name
        state.paging().loading = True
        self.fetcher.run("jump", lambda: fetch_around(client, peer, msg.id, stop_at),
                         key=key, target=msg.id)

    # ------------------------------------------------------------ results

    def on_fetched_event(self, ev: Dict[str, Any]) -> None:
        kind, key = ev.get("kind"), ev.get("key")
        state = self.state
        if key is not None and ev.get("error") is None and kind in ("older", "jump"):
            state.view.paging_of(key).loading = False
        if ev.get("error") is not None:
            if key is not None:
                state.view.paging_of(key).loading = False
            if kind != "quotes":
                state.set_status(f"Could not load messages: {sanitize(str(ev['error']))}",
                                 error=True)
            return
        handler = {"newest": self._on_newest, "older": self._on_older, "jump": self._on_jump,
                   "quotes": self._on_quotes}.get(str(kind))
        if handler is not None:
            handler(ev)

    def _on_newest(self, ev: Dict[str, Any]) -> None:
        messages, more = ev["result"]
        state = self.state
        state.add_messages(messages)
        paging = state.view.paging_of(ev["key"])
        if paging.older is None:
            paging.older = more
        if ev["key"] == state.conversation_key():
            state.mark_new_messages()
            self.mark_read()
            self.fetch_quotes()

    def _on_older(self, ev: Dict[str, Any]) -> None:
        messages, more = ev["result"]
        state = self.state
        state.add_messages(messages)
        paging = state.view.paging_of(ev["key"])
        paging.older = bool(messages) and more
        if messages:
            paging.oldest = messages[0].id
        if ev["key"] == state.conversation_key():
            self.fetch_quotes()

    def _on_jump(self, ev: Dict[str, Any]) -> None:
        messages, older = ev["result"]
        state = self.state
        state.add_messages(messages)
        state.view.paging_of(ev["key"]).older = older
        if ev["key"] == state.conversation_key():
            state.select(ev["target"])
            self.mark_read()
            self.fetch_quotes()

    def _on_quotes(self, ev: Dict[str, Any]) -> None:
        self.state.view.quotes.update(ev["result"])

    # ------------------------------------------------------------ keys

    def scroll_page(self) -> int:
        height = self.state.view.height
        return max(1, height - 2) if height else self.page()

    def page_up(self) -> None:
        if self.state.scroll_by(self.scroll_page()):
            self.load_older()

    def page_down(self) -> None:
        self.state.scroll_by(-self.scroll_page())

    def to_bottom(self) -> None:
        """End: back to the newest message; the view follows new ones again."""
        self.state.view.to_bottom()
        self.state.selected_message = None

    def to_top(self) -> None:
        """Home: the oldest loaded message, and the page before it on its way."""
        view = self.state.view
        view.page_up(len(view.rows))
        self.load_older()

    def move_selection(self, delta: int) -> None:
        """↑/↓ in the messages pane; ↑ on the oldest loaded message loads older ones."""
        state = self.state
        state.move_selection(delta)
        msgs = state.visible_messages()
        if delta < 0 and msgs and state.selected_message == msgs[0].id:
            self.load_older()
