"""Rooms in the store, on real files: creation, membership, invitations, topics,
room read markers, and restarts. Messages to rooms, nonces, paging and search
are further down. Faults (torn records, power cuts) are in test_store_faults.py.
"""
from __future__ import annotations

import inspect
import json
import threading
from typing import List

import pytest

from chat import protocol as p
from chat.store import ACCOUNTS_FILE, JOURNAL_FILE, USERS_FILE, ChatStore, Room, Store, open_store
from chat.store.mentions import mentioned
from tests.test_store import V1_JOURNAL, V1_USERS, Clock, GatedLayer, check_v1_content, with_users


@pytest.fixture
def db(tmp_path):
    return tmp_path / "db"


@pytest.fixture
def store(db):
    s = with_users(Store(db, clock=Clock()), "Alice", "bob", "Carol", "dave")
    yield s
    s.close()


def code_of(call) -> str:
    with pytest.raises(p.ChatError) as err:
        call()
    return err.value.code


def accounts_lines(db) -> int:
    return (db / "accounts.jsonl").read_bytes().count(b"\n")


# ---------------------------------------------------------------- creating

def test_a_room_is_created_with_its_creator_as_first_member(store):
    room = store.create_room("ALICE", "#General", "all things", private=False)
    assert room == Room("#General", "all things", False, frozenset({"alice"}),
                        room.created, "alice", frozenset())
    assert room.key == "#general" and room.created > 0
    assert store.get_room("#GENERAL") == room and store.get_room("#other") is None
    assert store.room_members("#general") == ["Alice"]
    assert store.rooms_of("alice") == ["#General"] and store.rooms_of("bob") == []
    assert store.is_member("alice", "#GENERAL") and not store.is_member("bob", "#general")
    assert store.read_marker("alice", "#general") == 0
    assert store.create_room("bob", "#quiet").topic == ""


@pytest.mark.parametrize("name, code", [
    ("general", p.INVALID_ROOM), ("#", p.INVALID_ROOM), ("#a b", p.INVALID_ROOM),
    ("#" + "x" * 33, p.INVALID_ROOM), ("#caf\u00e9", p.INVALID_ROOM),
])
def test_a_bad_room_name_is_refused(store, name, code):
    assert code_of(lambda: store.create_room("alice", name)) == code
    assert store.rooms_visible_to("alice") == []


@pytest.mark.parametrize("topic", ["x" * 391, "two\nlines", "bell\x07", "c1\x85", "\u2028"])
def test_a_bad_topic_is_refused_at_creation(store, topic):
    assert code_of(lambda: store.create_room("alice", "#r", topic)) == p.INVALID_TOPIC
    assert store.get_room("#r") is None


def test_a_room_name_is_taken_in_any_case(store, db):
    store.create_room("alice", "#General")
    lines = accounts_lines(db)
    for name in ("#General", "#general", "#GENERAL"):
        assert code_of(lambda name=name: store.create_room("bob", name)) == p.ROOM_TAKEN
    assert accounts_lines(db) == lines
    assert code_of(lambda: store.create_room("nobody", "#x")) == p.UNKNOWN_USER


def test_concurrent_creations_of_one_name_make_one_room(store):
    results: List[str] = []

    def create(user: str) -> None:
        try:
            store.create_room(user, "#race")
            results.append("made")
        except p.ChatError as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=create, args=(u,)) for u in ("alice", "bob", "carol")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["made", p.ROOM_TAKEN, p.ROOM_TAKEN]
    assert len(store.get_room("#race").members) == 1


# ---------------------------------------------------------------- joining and leaving

def test_joining_a_public_room_and_joining_again(store, db):
    store.create_room("alice", "#general")
    room, changed = store.join_room("BOB", "#GENERAL")
    assert changed and room.members == {"alice", "bob"}
    lines = accounts_lines(db)
    room2, changed = store.join_room("bob", "#general")
    assert not changed and room2 == room
    assert accounts_lines(db) == lines                     # nothing written
    assert store.room_members("#general") == ["Alice", "bob"]
    assert code_of(lambda: store.join_room("bob", "#nowhere")) == p.UNKNOWN_ROOM
    assert code_of(lambda: store.join_room("bob", "bob")) == p.UNKNOWN_ROOM


def test_concurrent_joins_of_one_user_change_once(store):
    store.create_room("alice", "#general")
    changed: List[bool] = []
    threads = [threading.Thread(target=lambda: changed.append(
        store.join_room("bob", "#general")[1])) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(changed) == [False] * 5 + [True]


def test_leaving_and_what_it_takes_away(store):
    store.create_room("alice", "#general")
    store.join_room("bob", "#general")
    room = store.leave_room("bob", "#General")
    assert room.members == {"alice"}
    assert store.rooms_of("bob") == [] and not store.is_member("bob", "#general")
    assert code_of(lambda: store.leave_room("bob", "#general")) == p.NOT_A_MEMBER
    assert code_of(lambda: store.leave_room("bob", "#nowhere")) == p.UNKNOWN_ROOM
    store.leave_room("alice", "#general")                  # the last member
    assert store.get_room("#general").members == frozenset()
    assert code_of(lambda: store.create_room("carol", "#GENERAL")) == p.ROOM_TAKEN
    room, changed = store.join_room("carol", "#general")   # it outlives its members
    assert changed and room.members == {"carol"}


# ---------------------------------------------------------------- private rooms

def test_a_private_room_needs_an_invitation_which_joining_uses_up(store, db):
    store.create_room("alice", "#secret", private=True)
    assert code_of(lambda: store.join_room("bob", "#secret")) == p.NOT_INVITED
    assert store.invite("alice", "#SECRET", "BOB") is True
    assert store.is_invited("bob", "#secret") and not store.is_member("bob", "#secret")
    lines = accounts_lines(db)
    assert store.invite("alice", "#secret", "bob") is False          # invited already
    assert store.invite("alice", "#secret", "alice") is False        # a member
    assert accounts_lines(db) == lines
    room, changed = store.join_room("bob", "#secret")
    assert changed and room.members == {"alice", "bob"} and room.invited == frozenset()
    assert not store.is_invited("bob", "#secret")
    store.leave_room("bob", "#secret")
    assert code_of(lambda: store.join_room("bob", "#secret")) == p.NOT_INVITED
    assert store.invite("alice", "#secret", "bob") is True           # invited again
    assert store.join_room("bob", "#secret")[1] is True


def test_invite_errors_and_public_rooms(store, db):
    store.create_room("alice", "#secret", private=True)
    store.create_room("alice", "#open")
    lines = accounts_lines(db)
    assert store.invite("alice", "#open", "bob") is False             # public: nothing
    assert not store.is_invited("bob", "#open")
    assert code_of(lambda: store.invite("alice", "#nowhere", "bob")) == p.UNKNOWN_ROOM
    assert code_of(lambda: store.invite("bob", "#secret", "carol")) == p.NOT_A_MEMBER
    assert code_of(lambda: store.invite("alice", "#secret", "nobody")) == p.UNKNOWN_USER
    assert accounts_lines(db) == lines


def test_which_rooms_a_user_sees(store):
    store.create_room("alice", "#zeta")
    store.create_room("alice", "#Alpha", private=True)
    store.create_room("bob", "#beta", private=True)
    store.create_room("carol", "#Gamma", private=True)
    store.invite("carol", "#gamma", "dave")

    def names(user: str) -> List[str]:
        return [room.name for room in store.rooms_visible_to(user)]

    assert names("alice") == ["#Alpha", "#zeta"]
    assert names("bob") == ["#beta", "#zeta"]
    assert names("dave") == ["#Gamma", "#zeta"]
    assert names("carol") == ["#Gamma", "#zeta"]
    store.join_room("dave", "#zeta")
    store.join_room("dave", "#gamma")
    assert store.rooms_of("dave") == ["#Gamma", "#zeta"]


# ---------------------------------------------------------------- topics

def test_setting_the_topic(store):
    store.create_room("alice", "#general", "old")
    assert store.set_topic("ALICE", "#GENERAL", "new topic \u00e9").topic == "new topic \u00e9"
    assert store.get_room("#general").topic == "new topic \u00e9"
    assert code_of(lambda: store.set_topic("bob", "#general", "mine")) == p.NOT_A_MEMBER
    assert code_of(lambda: store.set_topic("alice", "#nowhere", "x")) == p.UNKNOWN_ROOM
    assert code_of(lambda: store.set_topic("alice", "#general", "a\nb")) == p.INVALID_TOPIC
    assert store.set_topic("alice", "#general", "").topic == ""


# ---------------------------------------------------------------- restarts

def test_a_restart_keeps_rooms_members_invitations_topics_and_markers(db):
    with with_users(Store(db, clock=Clock()), "Alice", "bob", "carol", "dave") as s:
        s.create_room("alice", "#General", "hello")
        s.create_room("bob", "#Secret", private=True)
        s.join_room("bob", "#general")
        s.join_room("carol", "#general")
        s.leave_room("carol", "#general")
        s.invite("bob", "#secret", "dave")
        s.set_topic("bob", "#general", "changed")
        before = {room.key: room for room in s.rooms_visible_to("dave")}
    for compact in (False, True, False):
        with Store(db) as s:
            assert {room.key: room for room in s.rooms_visible_to("dave")} == before
            assert s.get_room("#secret").invited == {"dave"}
            assert s.rooms_of("bob") == ["#General", "#Secret"] and s.rooms_of("carol") == []
            assert s.get_room("#general").topic == "changed"
            assert s.read_marker("bob", "#general") == 0
            assert code_of(lambda: s.create_room("dave", "#SECRET")) == p.ROOM_TAKEN
            if compact:
                assert s.compact_accounts()
    with Store(db) as s:
        assert s.join_room("dave", "#secret")[1] is True
    with Store(db) as s:
        assert s.get_room("#secret").members == {"bob", "dave"}
        assert s.get_room("#secret").invited == frozenset()


# ---------------------------------------------------------------- folders written before rooms

#: A folder as the store wrote it before rooms (users.json version 2 holding changes 1-3,
#: the accounts journal with changes 4-6, the message journal), byte for byte.
TODAY_USERS = (
    b'{"version":2,"seq":3,"users":{"alice":{"name":"Alice","hash":"h-a","created":'
    b'1700000000.5},"bob":{"name":"bob","hash":"h-b","created":1700000001.5}},"read":'
    b'{"alice":{"bob":2}}}\n')
TODAY_ACCOUNTS = (
    b'{"a":{"seq":4,"op":"signup","name":"Carol","hash":"h-c","created":1700000004.5},'
    b'"c":2135035906}\n'
    b'{"a":{"seq":5,"op":"hash","user":"bob","hash":"h-b2"},"c":3147764825}\n'
    b'{"a":{"seq":6,"op":"read","user":"bob","peer":"alice","upto":1},"c":429815130}\n')
TODAY_JOURNAL = (
    b'{"m":{"id":1,"from":"Alice","to":"bob","text":"hi \\"bob\\" \\u00e9","ts":1700000002.5,'
    b'"reply_to":null},"c":1311322823}\n'
    b'{"m":{"id":2,"from":"bob","to":"Alice","text":"@alice back","ts":1700000003.5,'
    b'"reply_to":1},"c":32962977}\n'
    b'{"m":{"id":3,"from":"Carol","to":"Carol","text":"note","ts":1700000005.5,'
    b'"reply_to":null},"c":469793797}\n'
    b'{"m":{"id":4,"from":"Carol","to":"Alice","text":"yo","ts":1700000006.5,'
    b'"reply_to":null},"c":129270036}\n')


def check_today_content(s: Store) -> None:
    assert s.usernames() == ["Alice", "bob", "Carol"]
    assert s.get_user("bob").password_hash == "h-b2"
    assert [m["id"] for m in map(json.loads, s.history("alice"))] == [1, 2, 4]
    assert [m["id"] for m in map(json.loads, s.history("carol"))] == [3, 4]
    assert s.get_message(1).text == 'hi "bob" \u00e9' and s.get_message(2).reply_to == 1
    assert s.read_marker("alice", "bob") == 2 and s.read_marker("bob", "alice") == 1
    assert s.unread_counts("alice") == {"Carol": 1}
    assert s.unread_counts("carol") == {"Carol": 1}        # a note to oneself counts
    assert s.unread_counts("bob") == {}


def test_a_folder_written_before_rooms_opens_unchanged_and_takes_rooms(db):
    db.mkdir()
    files = {USERS_FILE: TODAY_USERS, ACCOUNTS_FILE: TODAY_ACCOUNTS,
             JOURNAL_FILE: TODAY_JOURNAL}
    for name, data in files.items():
        (db / name).write_bytes(data)
    with Store(db, clock=Clock()) as s:
        check_today_content(s)
    assert {name: (db / name).read_bytes() for name in files} == files
    with Store(db, clock=Clock()) as s:
        s.create_room("carol", "#General", "t")
        s.join_room("alice", "#general")
    for compact in (True, False):
        with Store(db) as s:
            check_today_content(s)
            assert s.room_members("#GENERAL") == ["Alice", "Carol"]
            assert s.read_marker("alice", "#general") == 0
            if compact:
                assert s.compact_accounts()
    doc = json.loads((db / USERS_FILE).read_bytes())
    assert doc["version"] == 2 and doc["seq"] == 8
    assert doc["read"] == {"alice": {"bob": 2, "#general": 0}, "bob": {"alice": 1}}
    assert doc["rooms"]["#general"]["members"] == ["alice", "carol"]


def test_a_version_1_folder_opens_unchanged_and_takes_rooms(db):
    db.mkdir()
    (db / USERS_FILE).write_bytes(V1_USERS)              # no journal of either kind
    with Store(db, clock=Clock()) as s:
        assert s.usernames() == ["Alice", "bob", "Carol"]
        assert s.read_marker("carol", "bob") == 3 and s.last_id == 0
        s.create_room("bob", "#r", private=True)
        s.invite("bob", "#r", "carol")
    assert (db / USERS_FILE).read_bytes() == V1_USERS
    with Store(db) as s:
        assert s.is_invited("carol", "#R") and s.rooms_of("bob") == ["#r"]
        assert s.read_marker("alice", "bob") == 2
    (db / ACCOUNTS_FILE).unlink()
    (db / JOURNAL_FILE).write_bytes(V1_JOURNAL)          # and with its message journal
    with Store(db) as s:
        check_v1_content(s)
        assert s.rooms_visible_to("carol") == []


# ---------------------------------------------------------------- room messages

def rooms_store(s: Store) -> Store:
    """alice and bob in the public #general, alice alone in the private #secret."""
    s.create_room("alice", "#General", "t")
    s.join_room("bob", "#general")
    s.create_room("alice", "#secret", private=True)
    return s


def post(s: Store, sender: str, to: str, text: str, **options) -> int:
    msg_id, _, fresh = s.append(sender, to, text, **options)
    assert fresh
    s.wait_durable(msg_id)
    return msg_id


def ids_of(messages: List[str]) -> List[int]:
    return [json.loads(m)["id"] for m in messages]


def test_a_room_message_names_the_room_as_created(store):
    rooms_store(store)
    msg_id, body, fresh = store.append("BOB", "#GENERAL", "hello room")
    assert fresh and msg_id == 1
    store.wait_durable(msg_id)
    assert json.loads(body)["to"] == "#General" and json.loads(body)["from"] == "bob"
    assert store.get_message(1).to == "#General"
    assert ids_of(store.history("alice", "#general")) == [1]
    assert store.history("alice", "bob") == []                 # not a direct message
    assert store.unread_counts("alice") == {}
    assert store.sent_bytes("bob") == len(body)


def test_only_members_send_to_a_room(store):
    rooms_store(store)
    assert code_of(lambda: store.append("carol", "#general", "hi")) == p.NOT_A_MEMBER
    assert code_of(lambda: store.append("bob", "#secret", "hi")) == p.NOT_A_MEMBER
    assert code_of(lambda: store.append("bob", "#nowhere", "hi")) == p.UNKNOWN_ROOM
    assert code_of(lambda: store.append("bob", "nobody", "hi")) == p.UNKNOWN_USER
    assert code_of(lambda: store.append("nobody", "bob", "hi")) == p.UNKNOWN_USER
    assert store.last_id == 0
    assert store.append_message("alice", "#general", "the old call")[0] == 1


def test_reply_to_must_be_visible_to_the_sender(store):
    rooms_store(store)
    in_room = post(store, "alice", "#general", "room")
    in_secret = post(store, "alice", "#secret", "secret")
    between_others = post(store, "carol", "dave", "dm")
    to_bob = post(store, "alice", "bob", "dm")
    assert post(store, "bob", "#general", "re", reply_to=in_room)
    assert post(store, "bob", "alice", "re in a dm", reply_to=in_room)
    assert post(store, "bob", "#general", "re a dm", reply_to=to_bob)
    for bad in (in_secret, between_others, 999):
        assert code_of(lambda bad=bad: store.append("bob", "#general", "x",
                                                    reply_to=bad)) == p.UNKNOWN_MESSAGE
    store.leave_room("bob", "#general")
    assert code_of(lambda: store.append("bob", "alice", "x",
                                        reply_to=in_room)) == p.UNKNOWN_MESSAGE


# ---------------------------------------------------------------- nonces

def test_a_resend_with_a_used_nonce_stores_nothing(store):
    rooms_store(store)
    first = store.append("bob", "alice", "once", nonce="n-1")
    assert first[2] is True
    store.wait_durable(first[0])
    again = store.append("BOB", "#general", "other text", nonce="n-1")
    assert again == (first[0], first[1], False)
    assert store.last_id == 1 and ids_of(store.history("alice")) == [1]
    other_user = store.append("alice", "bob", "same nonce, other user", nonce="n-1")
    assert other_user[2] is True and other_user[0] == 2
    assert store.append("bob", "alice", "new nonce", nonce="n-2")[0] == 3
    assert store.append("bob", "alice", "no nonce")[0] == 4
    assert store.append("bob", "alice", "no nonce")[0] == 5


def test_a_resend_of_a_message_not_yet_durable_answers_with_it(db):
    files = GatedLayer()
    with with_users(Store(db, files=files), "alice", "bob") as s:
        first = s.append("alice", "bob", "first", nonce="a")
        assert files.entered.wait(10)
        second = s.append("alice", "bob", "second", nonce='"b\\\u00e9\U0001f600')
        assert s.append("alice", "bob", "again", nonce="a") == (first[0], first[1], False)
        assert s.append("alice", "bob", "x", nonce='"b\\\u00e9\U0001f600')[:2] == second[:2]
        files.gate.set()
        s.wait_durable(second[0])
        assert s.last_id == 2


def test_nonces_are_remembered_across_restarts(db):
    with with_users(Store(db, clock=Clock()), "alice", "bob") as s:
        rooms_store(s)
        sent = [s.append("bob", "#general" if i % 2 else "alice", f"m{i}", nonce=f"n{i}")
                for i in range(5)]
        s.wait_durable(s.last_id)
    for restart in range(2):
        with Store(db) as s:
            for i, (msg_id, body, _) in enumerate(sent):
                assert s.append("bob", "alice", "resend", nonce=f"n{i}") == (msg_id, body,
                                                                             False)
            assert s.last_id == 5 + restart
            if restart == 0:
                assert s.append("alice", "bob", "new", nonce="n0")[2] is True
                s.wait_durable(s.last_id)
            else:
                assert s.append("alice", "bob", "new", nonce="n0")[:2] == (6, s.history(
                    "alice", limit=1)[0])


def test_at_least_the_last_1000_nonces_of_a_user_are_remembered(db):
    with with_users(Store(db), "alice", "bob") as s:
        for i in range(2_600):
            s.append("alice", "bob", "m", nonce=f"n{i}")
            if i % 500 == 0:
                s.wait_durable(s.last_id)
        s.wait_durable(s.last_id)
        for i in range(1_600, 2_600):
            assert s.append("alice", "bob", "again", nonce=f"n{i}")[2] is False
    with Store(db) as s:
        for i in range(1_600, 2_600):
            assert s.append("alice", "bob", "again", nonce=f"n{i}")[0] == i + 1
        assert s.last_id == 2_600


# ---------------------------------------------------------------- history

def test_history_without_with_brings_the_rooms_one_is_in_now(store):
    rooms_store(store)
    store.join_room("carol", "#general")
    plan = [("alice", "#general"), ("alice", "bob"), ("carol", "dave"), ("alice", "#secret"),
            ("bob", "#general"), ("dave", "bob"), ("carol", "#general")]
    for i, (sender, to) in enumerate(plan):
        post(store, sender, to, f"m{i + 1}")
    assert ids_of(store.history("bob")) == [1, 2, 5, 6, 7]
    assert ids_of(store.history("alice")) == [1, 2, 4, 5, 7]
    assert ids_of(store.history("bob", after=2, limit=2)) == [5, 6]      # catching up
    assert store.history_page("bob", after=2, limit=2) == (store.history("bob", after=2,
                                                                         limit=2), True)
    store.leave_room("bob", "#general")
    assert ids_of(store.history("bob")) == [2, 6]
    assert code_of(lambda: store.history("bob", "#general")) == p.NOT_A_MEMBER
    assert code_of(lambda: store.history("bob", "#nowhere")) == p.UNKNOWN_ROOM
    assert ids_of(store.history("carol")) == [1, 3, 5, 7]               # from before she joined
    store.join_room("bob", "#general")
    assert ids_of(store.history("bob", "#GENERAL")) == [1, 5, 7]


def reference_page(mine: List[int], after, before, limit):
    if after is not None:
        newer = [i for i in mine if i > after]
        return newer[:limit], len(newer) > limit
    older = [i for i in mine if before is None or i < before]
    return older[-limit:], len(older) > limit


def test_history_pages_and_more_match_the_reference_at_every_boundary(store):
    rooms_store(store)
    store.create_room("bob", "#b")
    for i in range(24):
        sender, to = [("alice", "bob"), ("bob", "#general"), ("bob", "#b"), ("carol", "dave"),
                      ("alice", "#secret"), ("dave", "bob")][i % 6 if i % 5 else 2]
        post(store, sender, to, f"m{i}")
    everything = [json.loads(m) for m in store.history("alice", "#secret")] + [
        json.loads(m) for m in store.history("carol", "dave")]
    shown = {"bob": sorted(set(range(1, 25)) - {m["id"] for m in everything})}
    assert ids_of(store.history("bob", limit=100)) == shown["bob"]
    for with_user, mine in ((None, shown["bob"]),
                            ("#b", ids_of(store.history("bob", "#b", limit=100)))):
        for limit in (1, 2, 3, 7, 30):
            for bound in range(-1, 27):
                for after, before in ((bound, None), (None, bound), (None, None)):
                    got, more = store.history_page("bob", with_user, after, before, limit)
                    assert (ids_of(got), more) == reference_page(mine, after, before, limit), (
                        with_user, limit, after, before)


# ---------------------------------------------------------------- search

def test_search_finds_only_what_the_caller_may_see(store):
    rooms_store(store)
    store.create_room("carol", "#other")
    texts = [("alice", "#general", "Straße party"), ("bob", "alice", "the STRASSE is wet"),
             ("carol", "dave", "strasse between others"), ("alice", "#secret", "strasse secret"),
             ("carol", "#other", "strasse elsewhere"), ("bob", "#general", "nothing here"),
             ("alice", "bob", "strasse again")]
    for sender, to, text in texts:
        post(store, sender, to, text)
    found, more = store.search("bob", "strasse")
    assert (ids_of(found), more) == ([1, 2, 7], False)
    assert ids_of(store.search("BOB", "STRASSE", limit=2)[0]) == [2, 7]
    assert store.search("bob", "strasse", limit=2)[1] is True
    assert ids_of(store.search("bob", "strasse", before=7, limit=1)[0]) == [2]
    assert store.search("bob", "strasse", before=2, limit=1) == (
        store.history("bob", before=2, limit=1), False)
    assert ids_of(store.search("bob", "strasse", "#general")[0]) == [1]
    assert ids_of(store.search("bob", "STRASSE", "ALICE")[0]) == [2, 7]
    assert store.search("bob", "strasse", "carol") == ([], False)
    assert code_of(lambda: store.search("bob", "x", "nobody")) == p.UNKNOWN_USER
    assert code_of(lambda: store.search("bob", "x", "#other")) == p.NOT_A_MEMBER
    assert code_of(lambda: store.search("bob", "x", "#nowhere")) == p.UNKNOWN_ROOM
    assert store.search("bob", "party")[0] == store.history("bob", limit=1, before=2)
    store.leave_room("bob", "#general")
    assert ids_of(store.search("bob", "strasse")[0]) == [2, 7]
    assert ids_of(store.search("alice", "strasse")[0]) == [1, 2, 4, 7]


def test_search_pages_backwards_across_many_chunks(store):
    rooms_store(store)
    for i in range(700):
        store.append("alice" if i % 3 else "bob", "#general" if i % 2 else "bob",
                     f"{'needle' if i % 7 == 0 else 'hay'} {i}")
    store.wait_durable(store.last_id)
    needles = [i + 1 for i in range(700) if i % 7 == 0]
    before, pages = None, []
    while True:
        found, more = store.search("bob", "NEEDLE", before=before, limit=30)
        pages.append(ids_of(found))
        if not more:
            break
        before = ids_of(found)[0]
    assert [i for page in reversed(pages) for i in page] == needles
    assert all(len(page) == 30 for page in pages[:-1])


# ---------------------------------------------------------------- room markers and counts

def test_room_markers_counts_and_mentions(store, db):
    rooms_store(store)
    first = post(store, "alice", "#general", "hello @bob!")
    store.join_room("carol", "#general")
    assert store.read_marker("carol", "#general") == first     # joined at the newest
    assert store.room_counts("carol", "#general") == (0, 0)
    post(store, "bob", "#general", "@bob talking to myself")
    post(store, "alice", "#general", "mail@bob @bobby @bob-x")
    post(store, "alice", "#general", "hey @Carol and @BOB.")
    assert store.room_counts("bob", "#GENERAL") == (3, 2)
    assert store.room_counts("carol", "#general") == (3, 1)
    assert store.room_counts("alice", "#general") == (1, 0)
    assert store.room_counts("dave", "#general") == (0, 0)
    assert code_of(lambda: store.room_counts("bob", "#nowhere")) == p.UNKNOWN_ROOM
    assert store.mark_read("bob", "#general", 2) == 2
    assert store.room_counts("bob", "#general") == (2, 1)
    lines = accounts_lines(db)
    assert store.mark_read("bob", "#general", 2) is None       # does not move: not written
    assert store.mark_read("bob", "#general", 1) is None
    assert accounts_lines(db) == lines
    assert store.mark_read("bob", "#general", 10_000) == 4     # capped at the newest
    assert store.room_counts("bob", "#general") == (0, 0)
    assert code_of(lambda: store.mark_read("dave", "#general", 1)) == p.NOT_A_MEMBER
    assert code_of(lambda: store.mark_read("dave", "#nowhere", 1)) == p.UNKNOWN_ROOM
    store.leave_room("bob", "#general")
    assert store.read_marker("bob", "#general") == 0
    store.join_room("bob", "#general")
    assert store.read_marker("bob", "#general") == 4
    post(store, "carol", "#general", "@bob back?")
    assert store.room_counts("bob", "#general") == (1, 1)
    store.close()
    with Store(db) as again:                                   # mentions rebuilt on replay
        assert again.room_counts("bob", "#general") == (1, 1)
        assert again.room_counts("carol", "#general") == (3, 1)
        assert again.read_marker("bob", "#general") == 4


def test_a_direct_marker_returns_its_new_value(store):
    post(store, "bob", "alice", "1")
    post(store, "alice", "bob", "2")
    assert store.mark_read("alice", "bob", 10) == 1
    assert store.mark_read("alice", "bob", 10) is None
    assert code_of(lambda: store.mark_read("alice", "nobody", 1)) == p.UNKNOWN_USER


@pytest.mark.parametrize("text, names", [
    ("mail@bob", set()), ("@bobby", {"bobby"}), ("@bob-x", {"bob-x"}), ("hi @Bob!", {"bob"}),
    ("@bob", {"bob"}), ("(@bob)", {"bob"}), ("\u00e9@bob", set()), ("@bob\u00e9", set()),
    ("_@bob", set()), ("-@bob", set()), ("@bob_", {"bob_"}), ("@bob.", {"bob", "bob."}),
    ("@@bob", {"bob"}), ("a @b @c", {"b", "c"}), ("no at sign", set()), ("@", set()),
])
def test_the_mention_rule(text, names):
    assert mentioned(text) == names


# ---------------------------------------------------------------- the contract

def test_the_json_store_has_every_method_of_the_contract_with_its_parameters():
    for name, member in inspect.getmembers(ChatStore):
        if name.startswith("_"):
            continue
        ours = getattr(Store, name)
        if isinstance(member, property):
            assert isinstance(ours, property), name
            continue
        assert (list(inspect.signature(ours).parameters)
                == list(inspect.signature(member).parameters)), name


def test_open_store_takes_a_folder_or_a_json_url(tmp_path):
    for url in (tmp_path / "a", str(tmp_path / "b"), f"json:{tmp_path / 'c'}",
                f"file://{tmp_path / 'd'}"):
        with open_store(url) as s:
            s.add_user("alice", "h")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a", "b", "c", "d"]
    with pytest.raises(ValueError):
        open_store("postgresql://localhost/chat")
