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
    users = [{"username": name, "online": p.user_key(name) in online,
              "unread": unread.get(name, 0)} for name in store.usernames()]
    return p.ok_reply(req.id, users=users)


def op_online(h: "ChatHandler", req: p.Request) -> bytes:
    online = h.server.online_keys()
    names = [n for n in h.server.store.usernames() if p.user_key(n) in online]
    return p.ok_reply(req.id, users=names)


def op_send(h: "ChatHandler", req: p.Request) -> bytes:
    user = h.me
    fields = req.fields
    text = fields["text"]
    p.validate_text(text)
    to = _known_user(h, fields["to"])
    server = h.server
    if server.send_limits.take(p.user_key(user)):
        raise p.ChatError(p.RATE_LIMITED, "you are sending too fast; slow down")
    quota = server.config.user_quota
    if quota and server.store.sent_bytes(user) >= quota:
        raise p.ChatError(p.RATE_LIMITED,
                          f"you have stored the most this server allows one user "
                          f"({quota // 2**20} MiB of messages); ask its operator")
    msg_id, msg_json = server.store.append_message(user, to, text, fields.get("reply_to"))
    h.sent(msg_id, req.id, msg_json, to, user)
    return p.ok_reply_raw(req.id, "message", msg_json)


def op_history(h: "ChatHandler", req: p.Request) -> bytes:
    user = h.me
    fields = req.fields
    peer = _known_user(h, fields["with"]) if "with" in fields else None
    messages = h.server.store.history(
        user, peer, after=fields.get("after"), before=fields.get("before"),
        limit=fields.get("limit", p.DEFAULT_HISTORY_LIMIT))
    return p.history_reply(req.id, messages, keep_oldest="after" in fields)


def op_read(h: "ChatHandler", req: p.Request) -> bytes:
    user = h.me
    peer = _known_user(h, req.fields["with"])
    if h.server.read_limits.take(p.user_key(user)):
        raise p.ChatError(p.RATE_LIMITED, "you are marking messages read too fast; slow down")
    h.server.store.mark_read(user, peer, req.fields["upto"])
    return p.ok_reply(req.id)


def op_ping(h: "ChatHandler", req: p.Request) -> bytes:
    return p.ok_reply(req.id)

OPS: Dict[str, Callable[["ChatHandler", p.Request], bytes]] = {
    "signup": op_signup, "login": op_login, "logout": op_logout, "users": op_users,
    "online": op_online, "send": op_send, "history": op_history, "read": op_read,
    "ping": op_ping,
}
