"""Scrollback: rows (day lines, grouped runs, the read marker, the paging line), the view
that stays put, older pages on demand, replies' originals; pure, against a fake client, and
in the real client in a pty, read off the screen."""
from __future__ import annotations

import time

import pytest

from chat.protocol import Message
from chat.server import ChatServer
from chat.store import Store
from chat.tui import app as tui_app
from chat.tui.history import (
    GROUP_SECONDS,
    MessageView,
    RowStyle,
    build_rows,
    day_label,
    marker_id,
    rule,
)
from chat.tui.panes import message_rows
from chat.tui.scrollback import FETCHED, Fetcher
from chat.tui.state import ChatState
from tests.support import RawConn, make_config

DAY = 24 * 3600
#: Tuesday 24 November 2026, 10:00 local time.
TUESDAY = time.mktime((2026, 11, 24, 10, 0, 0, 0, 0, -1))


def msg(i, sender="bob", to="alice", text="hi", ts=None, reply_to=None):
    return Message(i, sender, to, text, TUESDAY + i if ts is None else ts, reply_to)


def texts(rows):
    return [r[0] for r in rows]


# ---------------------------------------------------------------- rows

def test_a_day_line_goes_between_messages_of_different_days_only():
    rows = build_rows([msg(1), msg(2, ts=TUESDAY + DAY)], 60, RowStyle("alice"))
    assert day_label(TUESDAY, now=TUESDAY) == "Tuesday 24 November"
    assert day_label(TUESDAY, now=TUESDAY + 400 * DAY) == "Tuesday 24 November 2026"
    days = [t for t, role, _ in rows if role == "day"]
    assert len(days) == 1 and "── Wednesday 25 November ──" in days[0]
    assert texts(rows).index(days[0]) == 2          # after message 1's header and text
    assert all(len(t) <= 60 for t in texts(rows))


def test_a_run_from_one_sender_within_five_minutes_shares_one_header():
    run = [msg(1), msg(2, ts=TUESDAY + 60), msg(3, ts=TUESDAY + 60 + GROUP_SECONDS + 1),
           msg(4, sender="alice", to="bob", ts=TUESDAY + 400), msg(5, ts=TUESDAY + 401)]
    rows = build_rows(run, 40, RowStyle("alice"))
    headers = [i for t, role, i in rows if role in ("me", "them")]
    assert headers == [1, 3, 4, 5]                  # 2 under 1's; 3 is too late; 5 after alice


def test_the_new_messages_line_sits_at_the_read_marker():
    msgs = [msg(1), msg(2, "alice", "bob"), msg(3), msg(4)]
    assert marker_id(msgs, "alice", 2) == 3
    assert marker_id(msgs, "alice", 0) is None
    assert marker_id(msgs, "alice", 9) == 1
    rows = build_rows(msgs, 40, RowStyle("alice", marker=3))
    at = [role for _, role, _ in rows].index("marker")
    assert rows[at + 1][2] == 3 and rows[at + 1][1] == "them"   # a header after the line
    assert "new messages" in rows[at][0]


def test_the_paging_line_says_loading_or_beginning():
    state = ChatState("alice", "x")
    state.set_users([("alice", True, 0), ("bob", True, 0)])
    state.add_messages([msg(1), msg(2)])
    state.open_conversation("bob")
    assert not any(role == "paging" for _, role, _ in message_rows(state, 40))
    state.paging().loading = True
    assert "loading older messages" in message_rows(state, 40)[0][0]
    state.paging().loading, state.paging().older = False, False
    assert "beginning of the conversation" in message_rows(state, 40)[0][0]
    assert rule("x", 11) == "──── x ────" and rule("a long label", 5) == "── a…"


# ---------------------------------------------------------------- the view

def rows_of(ids, lines=1):
    return [(f"{i}.{k}", "text", i) for i in ids for k in range(lines)]


def test_a_scrolled_up_view_stays_put_and_counts_new_messages():
    view = MessageView()
    rows = rows_of(range(1, 41))
    assert view.place(rows, 10, None) == 30          # following: the bottom
    view.page_up(8)
    assert view.place(rows, 10, None) == 22
    view.on_new_message()
    view.on_new_message()
    assert view.place(rows_of(range(1, 43)), 10, None) == 22   # not pulled down
    assert view.new_below == 2 and view.scrolled() == 42 - 10 - 22
    view.page_down(100)
    assert view.follow and view.new_below == 0
    assert view.place(rows_of(range(1, 43)), 10, None) == 32


def test_older_rows_loaded_above_keep_the_top_row_in_place():
    view = MessageView()
    view.place(rows_of(range(100, 140)), 10, None)
    assert view.page_up(100) is True                 # the top: time to load older ones
    top = view.place([("loading", "paging", None)] + rows_of(range(100, 140)), 10, None)
    assert top == 0
    older = [("begin", "paging", None)] + rows_of(range(50, 140))
    top = view.place(older, 10, None)
    assert older[top + 1][2] == 100                  # the same rows on screen as before
    assert view.follow is False


def test_the_selection_stays_visible():
    view = MessageView()
    rows = rows_of(range(1, 41), lines=3)             # 3 rows each
    view.place(rows, 9, None)
    view.reveal = True
    top = view.place(rows, 9, 5)                      # far above the view
    assert top == 12 and not view.follow
    view.reveal = True
    top = view.place(rows, 9, 40)                     # back at the bottom: follows again
    assert top == len(rows) - 9 and view.follow
    view.reveal = True
    assert view.place(rows, 9, 999) == top            # an unknown id changes nothing


def test_up_and_down_clamp_and_start_from_the_screen():
    state = ChatState("alice", "x")
    state.set_users([("alice", True, 0), ("bob", True, 0)])
    state.add_messages([msg(i) for i in range(1, 31)])
    state.open_conversation("bob")
    state.focus = "messages"
    state.view.place(message_rows(state, 40), 10, None)
    state.view.page_up(20)
    state.view.place(message_rows(state, 40), 10, None)
    state.move(-1)
    assert state.selected_message == state.view.visible_ids()[-1]   # from what is shown
    for _ in range(50):
        state.move(-1)
    assert state.selected_message == 1
    for _ in range(50):
        state.move(1)
    assert state.selected_message == 30


# ---------------------------------------------------------------- the app, a fake server

class PagingClient:
    """History of one conversation with bob, paged like the server (``more``)."""

    def __init__(self, count, page=50):
        import queue
        self.username = "alice"
        self.events = queue.Queue()
        self.all = [msg(i, text=f"m{i}") for i in range(1, count + 1)]
        self.page = page
        self.asked = []

    def history_page(self, with_user=None, after=None, before=None, limit=None):
        self.asked.append((with_user, after, before, limit))
        limit = min(limit or 100, self.page)
        if after is not None:
            sel = [m for m in self.all if m.id > after]
            return sel[:limit], len(sel) > limit
        sel = [m for m in self.all if before is None or m.id < before]
        return sel[-limit:], len(sel) > limit

    def history(self, **kw):
        return self.history_page(**kw)[0]

    def read(self, *args):
        pass

    def search(self, query, with_user=None, before=None, limit=None):
        found = [m for m in self.all if query.lower() in m.text.lower()]
        return found[-(limit or 50):], False


def fake_app(count):
    app = tui_app.ChatApp(None, PagingClient(count), "test:1", beep=False)
    app._fetcher = Fetcher(app.on_event, threaded=False)
    app.state.set_users([("alice", True, 0), ("bob", True, 0)])
    return app


def draw_messages(app, height=12, width=50):
    app.state.view.place(message_rows(app.state, width), height, app.state.selected_message)


def test_page_up_at_the_top_loads_the_page_before_until_the_beginning():
    app = fake_app(120)
    app.open("bob")
    assert [m.id for m in app.state.visible_messages()][0] == 71    # the newest page
    pages = 0
    while app.state.paging().older is not False:
        draw_messages(app)
        app.page_up()
        pages += 1
        assert pages < 200
    assert app.client.asked[1][2] == 71                             # before the oldest
    assert app.state.visible_messages()[0].id == 1
    rows = message_rows(app.state, 50)
    assert "beginning of the conversation" in rows[0][0]


def test_a_reply_to_a_message_not_loaded_shows_its_author_and_words():
    app = fake_app(100)
    app.client.all.append(msg(101, text="answer", reply_to=3))
    app.open("bob")
    quote = [t for t, role, _ in message_rows(app.state, 60) if role == "quote"]
    assert quote == ["  ↪ reply to bob: “m3”"]


def test_fetch_errors_are_said_and_loading_stops():
    app = fake_app(10)
    app.open("bob")
    app.state.paging().older = True
    app.client.history_page = lambda **kw: (_ for _ in ()).throw(ConnectionError("down"))
    app.load_older()
    assert not app.state.paging().loading
    assert "Could not load messages" in app.state.status
    assert FETCHED == "tui.fetched"


# ---------------------------------------------------------------- the real client in a pty

pexpect = pytest.importorskip("pexpect")
pytest.importorskip("pyte")

from tests.test_tui_rooms import logged_in, signed_up  # noqa: E402

KEYS = {"pgup": "\x1b[5~", "pgdn": "\x1b[6~", "end": "\x1b[4~", "shift-tab": "\x1b[Z",
        "up": "\x1bOA", "alt-1": "\x1b1"}


def press(term, key, times=1, pause=0.08):
    for _ in range(times):
        term.child.send(KEYS[key])
        time.sleep(pause)
    term.pump()


def pane(term):
    """The messages pane's rows (right of the conversations list)."""
    return [row[25:].rstrip() for row in term.screen.display]


def send_many(server, sender, to, texts_, password="password1", **fields):
    """Send many messages at once (pipelined), as ``sender``; returns their ids."""
    conn = RawConn(server.address)
    conn.ok("login", username=sender, password=password)
    for i, text in enumerate(texts_):
        conn.send_obj({"op": "send", "id": 1000 + i, "to": to, "text": text, **fields})
    ids = []
    for _ in texts_:
        reply = conn.reply()
        assert reply["ok"], reply
        ids.append(reply["message"]["id"])
    conn.close()
    return ids


def test_pty_a_new_message_keeps_a_scrolled_up_view_and_says_so(chat_server, terminals):
    signed_up(chat_server, "alice", "bob")
    send_many(chat_server, "bob", "alice", [f"line {i:03}" for i in range(80)])
    alice = logged_in(chat_server, terminals, "alice")
    press(alice, "alt-1")
    alice.wait_for("Messages with bob", "line 079")
    press(alice, "pgup", 2)
    alice.wait_for("scrolled up")
    before = pane(alice)[1:20]
    assert "line 079" not in "\n".join(pane(alice))
    send_many(chat_server, "bob", "alice", ["fresh news"])
    alice.wait_for("-- 1 new below --")
    assert pane(alice)[1:20] == before and "fresh news" not in alice.text()
    press(alice, "shift-tab")                       # the messages pane
    press(alice, "end")
    screen = alice.wait_for("fresh news")
    assert "new below" not in screen and "scrolled up" not in screen


def padded(count):
    """Messages whose JSON is long (é is sent as \\u00e9): a page holds ~170 of them."""
    return [f"message {i:04} " + "é" * 50 for i in range(1, count + 1)]


def test_pty_page_up_loads_older_pages_to_the_first_message(chat_server, terminals):
    signed_up(chat_server, "alice", "bob")
    send_many(chat_server, "bob", "alice", padded(600))
    alice = logged_in(chat_server, terminals, "alice", rows=60)
    press(alice, "alt-1")
    alice.wait_for("message 0600")
    for _ in range(60):
        press(alice, "pgup", pause=0.15)
        if "beginning of the conversation" in alice.text():
            break
    screen = alice.wait_for("beginning of the conversation", "message 0001")
    assert "message 0002" in screen


def test_pty_a_reply_to_a_message_not_loaded_shows_its_author_and_words(chat_server,
                                                                          terminals):
    signed_up(chat_server, "alice", "bob")
    ids = send_many(chat_server, "bob", "alice", padded(400))
    send_many(chat_server, "bob", "alice", ["about the first one"], reply_to=ids[0])
    alice = logged_in(chat_server, terminals, "alice")
    press(alice, "alt-1")
    alice.wait_for("about the first one")
    screen = alice.wait_for("↪ reply to bob: “message 0001")
    assert "reply to message #" not in screen


def test_pty_the_new_messages_line_is_at_the_read_marker(chat_server, terminals):
    signed_up(chat_server, "alice", "bob")
    ids = send_many(chat_server, "bob", "alice", ["seen one", "seen two"])
    reader = RawConn(chat_server.address)
    reader.login("alice", signup=False)
    reader.ok("read", with_=("bob"), upto=ids[-1])
    reader.close()
    send_many(chat_server, "bob", "alice", ["unseen one", "unseen two"])
    alice = logged_in(chat_server, terminals, "alice")
    alice.wait_for("bob (2)")
    press(alice, "alt-1")
    alice.wait_for("new messages", "unseen two")
    rows = pane(alice)
    where = {name: next(i for i, r in enumerate(rows) if name in r)
             for name in ("seen two", "new messages", "unseen one")}
    assert where["seen two"] < where["new messages"] < where["unseen one"]


@pytest.fixture
def clocked_server(tmp_path):
    """A server whose store's clock the test sets: ``(server, now)``, ``now[0]`` the time."""
    now = [time.time()]
    config = make_config(tmp_path / "db")
    server = ChatServer(config, store=Store(config.db, clock=lambda: now[0]))
    server.serve_in_thread()
    yield server, now
    server.stop()


def test_pty_a_day_line_between_days_and_one_header_per_run(clocked_server, terminals):
    server, now = clocked_server
    signed_up(server, "alice", "bob")
    now[0] = time.time() - 2 * DAY
    send_many(server, "bob", "alice", ["two days ago", "and again"])
    now[0] = time.time()
    send_many(server, "bob", "alice", ["today"])
    alice = logged_in(server, terminals, "alice")
    press(alice, "alt-1")
    screen = alice.wait_for("today", "two days ago")
    label = day_label(time.time())
    assert f"── {label} ──" in screen
    rows = pane(alice)
    header = [r for r in rows if r.lstrip()[:2].isdigit() and "bob" in r]
    assert len(header) == 2                           # one per day: the run shares it


def test_pty_the_selection_scrolls_the_view_with_it(chat_server, terminals):
    signed_up(chat_server, "alice", "bob")
    send_many(chat_server, "bob", "alice", [f"row {i:03}" for i in range(60)])
    alice = logged_in(chat_server, terminals, "alice", rows=24)
    press(alice, "alt-1")
    alice.wait_for("row 059")
    press(alice, "shift-tab")
    press(alice, "up", 40, pause=0.03)
    alice.pump(0.3)
    screen = alice.text()
    assert "row 020" in screen and "row 059" not in screen
    selected = [y for y in range(1, 20)
                if all(alice.screen.buffer[y][x].reverse for x in range(27, 34))]
    assert selected and "row 020" in alice.screen.display[selected[0]]
