"""The conversations list, the activity line, navigation, commands and help, without a
terminal; and the ChatApp's room commands and events against a fake client."""
from __future__ import annotations

import queue
import socket

import pytest

from chat import protocol as p
from chat.client import ChatClient, RoomInfo, ServerUnreachable
from chat.protocol import Message
from chat.tui import app as tui_app
from chat.tui.commands import COMMANDS, CommandError, help_for, help_lines, parse_command
from chat.tui.conversations import Conversations, mentions
from chat.tui.panes import conversation_label, message_rows, messages_title
from chat.tui.state import ChatState, InputLine, clean_paste


def msg(i, sender, to, text="hi"):
    return Message(i, sender, to, text, 1764000000.0 + i, None)


@pytest.fixture
def convs():
    c = Conversations("alice")
    for name in ("carol", "#team", "Bob", "#ops", "dave"):
        c.add(name)
    return c


def test_order_is_stable_rooms_then_people_by_name(convs):
    assert [c.name for c in convs.ordered()] == ["#ops", "#team", "Bob", "carol", "dave"]
    convs.on_message(msg(1, "dave", "alice"), is_open=False)     # activity does not reorder
    assert [c.name for c in convs.ordered()] == ["#ops", "#team", "Bob", "carol", "dave"]
    assert convs.number_of("DAVE") == 5 and convs.by_number(2).name == "#team"
    assert convs.by_number(6) is None and convs.by_number(0) is None


def test_activity_line_counts_unread_and_marks_mentions_calls_for_me_first(convs):
    assert convs.activity() == ""
    for i in range(5):
        convs.on_message(msg(10 + i, "bob", "#team", "hi @alice" if i == 2 else "chat"), False)
    convs.on_message(msg(20, "carol", "alice"), False)
    convs.on_message(msg(21, "carol", "alice"), False)
    convs.on_message(msg(22, "bob", "#ops", "no mention of alice here"), False)
    convs.on_message(msg(23, "alice", "#ops", "my own"), False)
    assert convs.activity() == "Act: 2:#team(5,@) 4:carol(2) 1:#ops(1)"


def test_an_open_conversation_and_my_own_messages_are_not_unread(convs):
    convs.on_message(msg(1, "carol", "alice"), is_open=True)
    convs.on_message(msg(2, "alice", "carol"), is_open=False)
    assert convs.get("carol").unread == 0


def test_a_message_from_someone_new_adds_their_conversation(convs):
    convs.on_message(msg(1, "erin", "alice"), False)
    assert convs.number_of("erin") == 6 and convs.get("erin").unread == 1


def test_next_active_takes_mentions_and_direct_messages_first_then_walks_on(convs):
    assert convs.next_active() is None
    convs.on_message(msg(1, "bob", "#ops", "plain"), False)
    convs.on_message(msg(2, "bob", "#team", "@Alice look"), False)
    convs.on_message(msg(3, "dave", "alice"), False)
    assert convs.next_active().name == "#team"
    assert convs.next_active("#team").name == "dave"   # the next urgent one after #team
    convs.get("#team").mark_read()
    convs.get("dave").mark_read()
    assert convs.next_active("dave").name == "#ops"    # then plain room activity


def test_step_wraps_around(convs):
    assert convs.step(None, 1).name == "#ops"
    assert convs.step(None, -1).name == "dave"
    assert convs.step("dave", 1).name == "#ops"
    assert convs.step("#ops", -1).name == "dave"
    assert convs.step("Bob", 1).name == "carol"


@pytest.mark.parametrize("text, expected", [
    ("hi @alice!", True), ("@ALICE", True), ("(@alice)", True), ("mail@alice", False),
    ("@alicea", False), ("@alice-x", False), ("alice", False), ("@alice_", False)])
def test_mentions_follow_the_servers_rule(text, expected):
    assert mentions(text, "alice") is expected


def test_a_read_event_from_another_session_brings_the_counts_down():
    state = ChatState("alice", "x")
    state.set_users([("alice", True, 0), ("carol", True, 0)])
    state.on_room("#team", "", 2, False)
    for i in range(1, 6):
        state.on_message(msg(i, "carol", "alice"))
    state.on_message(msg(6, "carol", "#team", "@alice hi"))
    state.on_message(msg(7, "carol", "#team", "more"))
    assert state.convs.activity() == "Act: 1:#team(2,@) 2:carol(5)"
    state.on_read("carol", 3)
    assert state.convs.get("carol").unread == 2
    state.on_read("#team", 6)
    assert state.convs.activity() == "Act: 2:carol(2) 1:#team(1)"
    state.on_read("carol", 5)
    state.on_read("#TEAM", 7)
    assert state.convs.activity() == ""


def test_state_rings_for_direct_messages_and_mentions_not_every_room_message():
    state = ChatState("alice", "x")
    state.set_users([("alice", True, 0), ("bob", True, 0)])
    state.on_room("#team", "lunch", 3, False)
    assert state.on_message(msg(1, "bob", "#team", "plain")) is False
    assert state.on_message(msg(2, "bob", "#team", "@alice hey")) is True
    assert state.on_message(msg(3, "bob", "alice")) is True
    assert state.on_message(msg(4, "alice", "#team", "@alice me")) is False
    assert state.on_message(msg(5, "bob", "#gone", "@alice")) is False   # not a room I am in
    state.open_conversation("#TEAM")
    assert [m.id for m in state.visible_messages()] == [1, 2, 4]
    assert messages_title(state) == "#team · 3 members · lunch"
    assert state.unread_to_mark() == ("#team", 2)


def test_users_with_unread_mail_and_history_join_the_list_rooms_only_by_membership():
    state = ChatState("alice", "x")
    state.set_users([("alice", True, 0), ("bob", True, 0), ("carol", False, 2),
                     *((f"user{i:02}", False, 0) for i in range(20))])
    state.add_messages([msg(1, "alice", "bob"), msg(2, "dave", "#left-long-ago")])
    assert [c.name for c in state.convs.ordered()] == ["bob", "carol"]
    assert state.convs.activity() == "Act: 2:carol(2)"


def test_conversation_labels_keep_the_count_and_cut_the_name():
    assert conversation_label(3, "#team", 5, True, None, 20) == " 3 #team (5,@)"
    assert conversation_label(5, "carol", 2, False, True, 20) == " 5 ●carol (2)"
    label = conversation_label(12, "a-very-long-name-indeed", 123, False, False, 16)
    assert label.endswith("(123)") and len(label) <= 16


# ---------------------------------------------------------------- commands and help

@pytest.mark.parametrize("line, name, args, text", [
    ("/join #team", "join", ["#team"], ""), ("/part", "part", [], ""),
    ("/part #x", "part", ["#x"], ""), ("/create #a private", "create", ["#a", "private"], ""),
    ("/create #a", "create", ["#a"], ""), ("/invite bob", "invite", ["bob"], ""),
    ("/topic lunch at noon", "topic", [], "lunch at noon"), ("/topic", "topic", [], ""),
    ("/members", "members", [], ""), ("/rooms", "rooms", [], ""), ("/open #team", "open",
                                                                    ["#team"], ""),
    ("/help join", "help", ["join"], ""), ("/logout", "logout", [], "")])
def test_room_commands_parse(line, name, args, text):
    cmd = parse_command(line)
    assert (cmd.name, cmd.args, cmd.text) == (name, args, text)


@pytest.mark.parametrize("bad", ["/join", "/invite", "/members now", "/open", "/create"])
def test_room_commands_refuse_a_wrong_shape_with_the_usage(bad):
    with pytest.raises(CommandError, match="usage: /"):
        parse_command(bad)


def test_help_lists_every_command_and_explains_one():
    text = "\n".join(help_lines())
    for name in COMMANDS:
        assert f"/{name}" in text
    for name in ("open", "logout", "join", "part", "create", "invite", "topic", "members",
                 "rooms"):
        assert f"/{name}" in text
    assert "Alt-a" in text and "Ctrl-B" not in text
    assert help_for("/join").startswith("/join #ROOM:")
    with pytest.raises(CommandError):
        help_for("frobnicate")


def test_tab_completes_rooms_and_commands():
    line = InputLine()
    line.insert("/join #te")
    line.complete(["bob", "#team"])
    assert line.text == "/join #team "
    line.kill_line()
    line.insert("/cre")
    line.complete([])
    assert line.text == "/create "


# ---------------------------------------------------------------- text and editing

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467"


def test_a_typed_or_pasted_zwj_sequence_survives():
    assert clean_paste("a" + FAMILY + "\x1b[31m") == "a" + FAMILY + "[31m"
    assert clean_paste("می\u200cخواهم") == "می\u200cخواهم"
    app = tui_app.ChatApp(None, FakeClient(), "test:1", beep=False)
    for ch in FAMILY:                            # typed one key at a time
        app.handle(ch)
    assert app.line.text == FAMILY
    assert tui_app.coalesce(list(FAMILY)) == [FAMILY]


def test_arrows_backspace_and_delete_move_by_grapheme_cluster():
    line = InputLine()
    line.insert("a" + FAMILY + "e\u0301b")
    line.left()
    assert line.text[line.cursor:] == "b"
    line.left()
    assert line.text[line.cursor:] == "e\u0301b"
    line.left()
    assert line.text[line.cursor:] == FAMILY + "e\u0301b"
    line.delete()
    assert line.text == "ae\u0301b"
    line.right()
    line.backspace()
    assert line.text == "ab" and line.cursor == 1
    line.end()
    line.insert(FAMILY)
    line.backspace()
    assert line.text == "ab"


# ---------------------------------------------------------------- the client library

def test_a_name_that_does_not_resolve_is_said_so_not_is_the_server_running(monkeypatch):
    def no_such_host(*_a, **_k):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_such_host)
    with pytest.raises(ConnectionError, match="does not resolve") as info:
        ChatClient("nosuchhost.invalid", 5050).connect()
    assert not isinstance(info.value, ServerUnreachable)
    assert "Is the server running" not in tui_app.connection_error_text(info.value)


def test_a_refused_connection_asks_whether_the_server_runs():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(ServerUnreachable) as info:
        ChatClient("127.0.0.1", port).connect()
    assert "Is the server running?" in tui_app.connection_error_text(info.value)
    assert "Is the server running?" in tui_app.connection_error_text(TimeoutError("slow"))


# ---------------------------------------------------------------- the app, no terminal

class FakeClient:
    """Enough of ChatClient for the room commands: rooms kept in a dict."""

    def __init__(self) -> None:
        self.username = "alice"
        self.events: "queue.Queue[dict]" = queue.Queue()
        self.rooms_: dict = {}
        self.reads = []
        self.sent = []

    def room_create(self, room, topic=None, private=None):
        if room.lower() in self.rooms_:
            raise p.ChatError(p.ROOM_TAKEN, f"there is a room {room} already")
        self.rooms_[room.lower()] = RoomInfo(room, topic or "", bool(private), 1, True, 0, 0)
        return self.rooms_[room.lower()]

    def join(self, room):
        return self.rooms_[room.lower()]

    def leave(self, room):
        pass

    def topic(self, room, topic):
        info = self.rooms_[room.lower()]
        self.rooms_[room.lower()] = RoomInfo(info.room, topic, info.private, info.members,
                                             True, 0, 0)
        return self.rooms_[room.lower()]

    def rooms(self, after=None, limit=None):
        return list(self.rooms_.values()), False

    def history(self, **_):
        return []

    def read(self, *args):
        self.reads.append(args)

    def send(self, to, text, reply_to=None):
        self.sent.append((to, text))
        return p.Message(100 + len(self.sent), "alice", to, text, 0.0, reply_to)


@pytest.fixture
def app():
    a = tui_app.ChatApp(None, FakeClient(), "test:1", beep=True)
    a.state.set_users([("alice", True, 0), ("bob", True, 0)])
    return a


def type_line(app, line):
    app.line.set(line)
    app.run_line()


def test_create_topic_send_and_part_a_room(app):
    type_line(app, "/create #team")
    assert app.state.peer == "#team" and "#team" in app.state.convs
    type_line(app, "/topic lunch at noon")
    assert messages_title(app.state) == "#team · 1 member · lunch at noon"
    type_line(app, "hello room")
    assert app.client.sent == [("#team", "hello room")]
    type_line(app, "/part")
    assert app.state.peer is None and "#team" not in app.state.convs


def test_a_failed_room_command_keeps_the_line_and_says_why(app):
    type_line(app, "/create #team")
    type_line(app, "/create #TEAM")
    assert app.line.text == "/create #TEAM"
    assert app.state.status_is_error and "there is a room" in app.state.status
    type_line(app, "/open")
    assert app.line.text == "/open" and "usage: /open" in app.state.status


def test_alt_digits_open_conversations_and_a_stale_esc_is_no_alt(app, monkeypatch):
    type_line(app, "/create #team")
    app.open(None)
    app.handle(27)
    app.handle("1")
    assert app.state.peer == "#team"
    app.open(None)
    now = [1000.0]
    monkeypatch.setattr(tui_app.time, "monotonic", lambda: now[0])
    app.handle(27)
    now[0] += 2.0                                 # the digit comes seconds later
    app.handle("1")
    assert app.state.peer is None and app.line.text == "1"


def test_logout_and_quit_ask_first(app):
    type_line(app, "/quit")
    assert not app.quit and app.state.confirm == "quit"
    app.handle("n")
    assert not app.quit and app.state.confirm is None
    type_line(app, "/quit")
    app.handle("y")
    assert app.quit
    type_line(app, "/logout")
    with pytest.raises(tui_app.LoggedOut):
        app.handle("y")


def test_ctrl_b_does_nothing_and_beep_is_a_command(app):
    app.handle(2)
    assert app.state.beep is True
    type_line(app, "/beep")
    assert app.state.beep is False


def test_room_events_keep_members_topic_and_membership(app):
    type_line(app, "/create #team")
    app.on_event({"event": "join", "room": "#team", "username": "bob"})
    app.on_event({"event": "topic", "room": "#team", "topic": "plans", "by": "bob"})
    assert messages_title(app.state) == "#team · 2 members · plans"
    app.on_event({"event": "leave", "room": "#team", "username": "bob"})
    assert app.state.convs.get("#team").members == 1
    app.on_event({"event": "leave", "room": "#team", "username": "alice"})
    assert "#team" not in app.state.convs


def test_a_plain_message_in_the_open_room_is_marked_read_and_does_not_ring(app, monkeypatch):
    rings = []
    monkeypatch.setattr(tui_app, "notify", lambda enabled: rings.append(enabled))
    type_line(app, "/create #team")
    plain = p.Message(7, "bob", "#team", "plain", 0.0, None)
    app.on_event({"event": "message", "message": plain.to_dict()})
    assert app.client.reads == [("#team", 7)] and rings == []
    mention = p.Message(8, "bob", "#team", "hey @alice", 0.0, None)
    app.on_event({"event": "message", "message": mention.to_dict()})
    assert app.client.reads[-1] == ("#team", 8) and rings == [True]
    rows = message_rows(app.state, 40)
    assert [r[1] for r in rows if r[2] == 8] == ["mention"]   # highlighted, under 7's header


class FakeWindow:
    """Just enough of a curses window to read what a pane draws."""

    def __init__(self, height: int, width: int) -> None:
        self.rows = [" " * width for _ in range(height)]
        self.size = (height, width)

    def getmaxyx(self):
        return self.size

    def addstr(self, y, x, text, attr=0):
        row = self.rows[y]
        self.rows[y] = (row[:x] + text + row[x + len(text):])[:self.size[1]]


def test_unread_conversations_below_the_fold_are_said_on_the_last_row(monkeypatch):
    from chat.tui import panes
    monkeypatch.setattr(panes, "Colors", lambda: type("C", (), {
        "title": 0, "focus_title": 0, "selected": 0, "unread": 0, "error": 0, "dim": 0})())
    state = ChatState("alice", "x")
    state.set_users([(f"u{i:02}", False, 1 if i in (15, 17) else 0) for i in range(20)])
    for i in range(20):
        state.convs.add(f"u{i:02}")
    win = FakeWindow(10, 20)
    panes.ConversationsPane().draw(win, panes.Rect(0, 0, 10, 20), state, panes.Colors())
    assert win.rows[-1].startswith(" ↓ 2 more unread")
    assert win.rows[1].startswith(" 1  u00")
