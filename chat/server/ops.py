"""The ops: one function per request kind, and the table the handler dispatches on.

The checks every op shares (the request's shape, ``login_required``) are
done once, from ``protocol.OP_SPECS``, before an op runs; an op raises
``ChatError`` for its own refusals and returns the reply's bytes. Sends do
not answer here: their acknowledgement waits for the commit
(``ChatHandler.sent``).
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Callable, Dict

from .. import protocol as p
from ..auth import Throttled

if TYPE_CHECKING:
    from .handler import ChatHandler

log = logging.getLogger("chat.server")


def _known_user(h: "ChatHandler", name: str) -> str:
    canonical = h.server.store.canonical_name(name)
    if canonical is None:
        raise p.ChatError(p.UNKNOWN_USER, f"there is no user {name[:40]!r}")
    return canonical


def op_signup(h: "ChatHandler", req: p.Request) -> bytes:
    name, password = req.fields["username"], req.fields["password"]
    p.validate_username(name)
    p.validate_password(password)
    wait = h.server.signup_limits.take(h.peer_host)
    if wait:
        log.info("sign-up refused from %s: over the per-address sign-up rate", h.peer)
        raise p.ChatError(p.RATE_LIMITED, "too many sign-ups from your address; "
                                          f"try again in {math.ceil(wait)} s")
    store = h.server.store
    if store.canonical_name(name) is not None:
        raise p.ChatError(p.USERNAME_TAKEN, f"the name {name!r} is taken")
    canonical = store.add_user(name, h.server.hasher.hash(password))
    log.info("signup %s from %s", canonical, h.peer)
    h.server.push_to(h.server.all_logged_in(), p.event("signup", username=canonical))
    return p.ok_reply(req.id, username=canonical)


def op_login(h: "ChatHandler", req: p.Request) -> bytes:
    if h.user is not None:
        raise p.ChatError(p.ALREADY_LOGGED_IN, f"already logged in as {h.user}")
    name, password = req.fields["username"], req.fields["password"]
    server = h.server
    account = p.user_key(name)
    try:
        server.throttle.begin(account, h.peer_host)
    except Throttled as exc:
        log.info("login refused from %s: %s", h.peer, exc.reason)
        raise p.ChatError(p.RATE_LIMITED,
                          f"{exc.reason}; try again in {max(1, round(exc.wait))} s") from None
    ok = False
    try:
        user = server.store.get_user(name) if p.USERNAME_RE.match(name) else None
        ok = server.hasher.verify(password, user.password_hash if user else None)
        ok = ok and user is not None
    finally:
        holdback = server.throttle.finish(account, h.peer_host, ok)
    if not ok or user is None:
        log.info("failed login from %s", h.peer)
        if holdback:  # the address is over its allowance: slow the next guess
            server.pause(holdback)
        raise p.ChatError(p.AUTH_FAILED, "wrong username or password")
    if server.hasher.needs_rehash(user.password_hash):
        server.store.set_password_hash(user.name, server.hasher.hash(password))
    h.logged_in(user.name)
    log.info("login %s from %s", user.name, h.peer)
    return p.ok_reply(req.id, username=user.name)


def op_logout(h: "ChatHandler", req: p.Request) -> bytes:
    user = h.me
    h.logged_out()
    log.info("logout %s (%s)", user, h.peer)
    return p.ok_reply(req.id)


def op_users(h: "ChatHandler", req: p.Request) -> bytes:
    user = h.me
    store = h.server.store
    online = h.server.online_keys()
    unread = store.unread_counts(user)
    names = p.start_after(store.usernames(), req.fields.get("after"))
    users = [{"username": name, "online": p.user_key(name) in online,
              "unread": unread.get(name, 0)} for name in names]
    return p.list_reply(req.id, "users", users, req.fields.get("limit"))


def op_online(h: "ChatHandler", req: p.Request) -> bytes:
    online = h.server.online_keys()
    names = [n for n in h.server.store.usernames() if p.user_key(n) in online]
    return p.ok_reply(req.id, users=names)


def _other_side(h: "ChatHandler", name: str) -> str:
    """The canonical name of a conversation's other side: a user or a room."""
    if name[:1] == "#":   # protocol.is_room, inline: this runs once per message
        return _known_room(h, name).name
    return _known_user(h, name)


def _known_room(h: "ChatHandler", name: str):
    room = h.server.store.get_room(name)
    if room is None:
        raise p.ChatError(p.UNKNOWN_ROOM, f"there is no room {name[:40]!r}")
    return room


def op_send(h: "ChatHandler", req: p.Request) -> bytes:
    """Check a send and defer it: the store takes all of a read's sends at once."""
    user = h.user
    assert user is not None   # the table marks send login_required
    fields = req.fields
    text = fields["text"]
    p.validate_text(text)
    to = _other_side(h, fields["to"])
    server = h.server
    if server.send_limits.rate > 0 and server.send_limits.take(p.user_key(user)):
        raise p.ChatError(p.RATE_LIMITED, "you are sending too fast; slow down")
    quota = server.config.user_quota
    if quota and server.store.sent_bytes(user) >= quota:
        raise p.ChatError(p.RATE_LIMITED,
                          f"you have stored the most this server allows one user "
                          f"({quota // 2**20} MiB of messages); ask its operator")
    return h.defer_send(req.id, (user, to, text, fields.get("reply_to"), fields.get("nonce")))


def op_history(h: "ChatHandler", req: p.Request) -> bytes:
    user = h.me
    fields = req.fields
    other = _other_side(h, fields["with"]) if "with" in fields else None
    messages, more = h.server.store.history_page(
        user, other, after=fields.get("after"), before=fields.get("before"),
        limit=fields.get("limit", p.DEFAULT_HISTORY_LIMIT))
    return p.history_reply(req.id, messages, keep_oldest="after" in fields, more=more)


def op_search(h: "ChatHandler", req: p.Request) -> bytes:
    fields = req.fields
    other = _other_side(h, fields["with"]) if "with" in fields else None
    messages, more = h.server.store.search(
        h.me, fields["query"], other, before=fields.get("before"),
        limit=fields.get("limit", p.DEFAULT_SEARCH_LIMIT))
    return p.history_reply(req.id, messages, keep_oldest=False, more=more)


def op_read(h: "ChatHandler", req: p.Request) -> bytes:
    user = h.me
    other = _other_side(h, req.fields["with"])
    if h.server.read_limits.take(p.user_key(user)):
        raise p.ChatError(p.RATE_LIMITED, "you are marking messages read too fast; slow down")
    moved = h.server.store.mark_read(user, other, req.fields["upto"])
    if moved is not None:
        h.server.to_users([user], p.event("read", **{"with": other, "upto": moved}), but=h)
    return p.ok_reply(req.id)


def op_password(h: "ChatHandler", req: p.Request) -> bytes:
    """Change one's password: the old one is checked as a login is (and throttled alike)."""
    user = h.me
    server = h.server
    account = p.user_key(user)
    try:
        server.throttle.begin(account, h.peer_host)
    except Throttled as exc:
        raise p.ChatError(p.RATE_LIMITED,
                          f"{exc.reason}; try again in {max(1, round(exc.wait))} s") from None
    ok = False
    try:
        stored = server.store.get_user(user)
        ok = stored is not None and server.hasher.verify(req.fields["old"], stored.password_hash)
    finally:
        holdback = server.throttle.finish(account, h.peer_host, ok)
    if not ok:
        log.info("wrong old password for %s from %s", user, h.peer)
        if holdback:
            server.pause(holdback)
        raise p.ChatError(p.AUTH_FAILED, "wrong password")
    p.validate_password(req.fields["new"])
    server.store.set_password_hash(user, server.hasher.hash(req.fields["new"]))
    log.info("password changed for %s from %s", user, h.peer)
    return p.ok_reply(req.id)


def op_ping(h: "ChatHandler", req: p.Request) -> bytes:
    return p.ok_reply(req.id)


# ---------------------------------------------------------------- rooms

def room_object(h: "ChatHandler", room, viewer: str) -> Dict[str, object]:
    """The Room object of the protocol, as ``viewer`` sees it."""
    store = h.server.store
    joined = p.user_key(viewer) in room.members
    unread, mentions = store.room_counts(viewer, room.name) if joined else (0, 0)
    return {"room": room.name, "topic": room.topic, "private": room.private,
            "members": len(room.members), "joined": joined, "unread": unread,
            "mentions": mentions}


def op_room_create(h: "ChatHandler", req: p.Request) -> bytes:
    fields = req.fields
    server = h.server
    room = server.store.create_room(h.me, fields["room"], fields.get("topic", ""),
                                    bool(fields.get("private", False)))
    server.rooms.joined(room.name, h.me)
    log.info("%s created room %s", h.me, room.name)
    if not room.private:
        for handler in server.all_logged_in():
            if handler is not h and handler.user is not None:
                handler.outbox.push(p.event("room", room=room_object(h, room, handler.user)))
    return p.ok_reply(req.id, room=room_object(h, room, h.me))


def op_join(h: "ChatHandler", req: p.Request) -> bytes:
    server = h.server
    room, changed = server.store.join_room(h.me, req.fields["room"])
    if changed:
        server.rooms.joined(room.name, h.me)
        server.to_users(room.members, p.event("join", room=room.name, username=h.me), but=h)
    return p.ok_reply(req.id, room=room_object(h, room, h.me))


def op_leave(h: "ChatHandler", req: p.Request) -> bytes:
    server = h.server
    room = server.store.leave_room(h.me, req.fields["room"])
    server.rooms.left(room.name, h.me)
    server.to_users(set(room.members) | {p.user_key(h.me)},
                    p.event("leave", room=room.name, username=h.me), but=h)
    return p.ok_reply(req.id)


def op_invite(h: "ChatHandler", req: p.Request) -> bytes:
    server = h.server
    invitee = _known_user(h, req.fields["username"])
    room = _known_room(h, req.fields["room"])
    if server.store.invite(h.me, room.name, invitee):
        server.to_users([invitee], p.event("invited", room=room.name, by=h.me), but=h)
    return p.ok_reply(req.id)


def op_topic(h: "ChatHandler", req: p.Request) -> bytes:
    server = h.server
    room = server.store.set_topic(h.me, req.fields["room"], req.fields["topic"])
    server.to_users(room.members, p.event("topic", room=room.name, topic=room.topic, by=h.me),
                    but=h)
    return p.ok_reply(req.id, room=room_object(h, room, h.me))


def op_rooms(h: "ChatHandler", req: p.Request) -> bytes:
    rooms = h.server.store.rooms_visible_to(h.me)
    after = req.fields.get("after")
    if after is not None:
        rooms = [r for r in rooms if r.name.lower() > after.lower()]
    return p.list_reply(req.id, "rooms", [room_object(h, r, h.me) for r in rooms],
                        req.fields.get("limit"))


def op_members(h: "ChatHandler", req: p.Request) -> bytes:
    server = h.server
    room = _known_room(h, req.fields["room"])
    if room.private and p.user_key(h.me) not in room.members:
        raise p.ChatError(p.NOT_A_MEMBER, f"you are not in {room.name}")
    online = server.online_keys()
    names = p.start_after(server.store.room_members(room.name), req.fields.get("after"))
    members = [{"username": n, "online": p.user_key(n) in online} for n in names]
    return p.list_reply(req.id, "members", members, req.fields.get("limit"))


OPS: Dict[str, Callable[["ChatHandler", p.Request], bytes]] = {
    "signup": op_signup, "login": op_login, "logout": op_logout, "users": op_users,
    "online": op_online, "send": op_send, "history": op_history, "read": op_read,
    "ping": op_ping, "password": op_password, "search": op_search,
    "room_create": op_room_create, "join": op_join, "leave": op_leave, "invite": op_invite,
    "topic": op_topic, "rooms": op_rooms, "members": op_members,
}
