"""The registration half of one IRC connection, sans-IO: ``Message`` in, replies out.

A ``Session`` takes a client from its first line to 001 (or to a closing ERROR)
the way irssi and WeeChat connect: ``CAP LS 302`` / ``CAP REQ`` / ``CAP END``,
SASL PLAIN through ``AUTHENTICATE``, or ``PASS``, then ``NICK`` and ``USER``.
It knows nothing of sockets, the store or the server: it asks a ``Backend`` to
check credentials, so ``chat.irc`` imports ``chat.protocol`` only, and the
tests drive it with a fake.

The nick is the account name: an authenticated client registers under its
account's canonical name (a nick differing only in case is corrected in 001),
and a different nick is refused in words. Without credentials the client is
told how to give them (irssi and WeeChat commands) and the link is closed,
unless the gateway admits guests.
"""
from __future__ import annotations

import logging
from typing import Callable, ClassVar, Dict, List, NamedTuple, Optional, Protocol, Tuple

from chat import protocol as p
from chat.irc import numerics as n
from chat.irc.protocol import (
    CapNegotiation,
    IrcError,
    Message,
    SaslAccumulator,
    casefold,
    decode_sasl_plain,
    isupport_messages,
    isupport_tokens,
    numeric,
    valid_nick,
)

log = logging.getLogger(__name__)

#: What a MOTD line may hold, in bytes, so that ``:server 372 nick :- line`` fits in 512.
MAX_MOTD_LINE_BYTES = 400
#: Failed SASL attempts one connection may make before it is closed: enough for a
#: typo and a retry; guessing more goes through the backend's throttle on new links.
MAX_SASL_FAILURES = 3
#: The user and channel modes 004 advertises (ISUPPORT says the same: PREFIX=(o)@, CHANMODES=,,,i).
USER_MODES, CHANNEL_MODES = "i", "io"


class Backend(Protocol):
    """What a session needs from the server; the real server implements it later.

    Attributes are read at registration time and may be plain values. The
    backend owns the throttle and the password check, so a login through IRC
    costs and counts the same as a native one.
    """

    #: The server's name: the source of every reply and the host in 002/004.
    server_name: str
    #: The software version shown in 002 and 004 (no spaces).
    version: str
    #: When the server started, in words, for 003.
    created: str

    def authenticate(self, name: str, password: str, peer: str) -> str:
        """Check a login as the native ``login`` op does and return the account's
        canonical name. Raises ``chat.protocol.ChatError``: ``auth_failed`` or
        ``unknown_user`` for wrong credentials, ``rate_limited`` (its message says
        when to retry) when the throttle refuses; any other code ends the link."""
        ...

    def motd(self) -> Optional[List[str]]:
        """The message of the day as lines, or None for none (422)."""
        ...


class Command(NamedTuple):
    """One row of the dispatch table: checked once in ``Session.feed``."""

    handler: str          # the name of the Session method
    min_params: int       # fewer -> 461 ERR_NEEDMOREPARAMS
    pre_registration: bool   # usable before 001; otherwise 451 ERR_NOTREGISTERED


#: How to give credentials, sent before closing an unauthenticated link.
LOGIN_HELP = (
    "This server needs an account: log in with your username and password.",
    "irssi: /connect -password PASSWORD HOST PORT  (or PASS username:password)",
    "irssi with SASL: /network add -sasl_username USERNAME -sasl_password PASSWORD "
    "-sasl_mechanism PLAIN NETWORK",
    "WeeChat: /set irc.server.NAME.sasl_username USERNAME and "
    "/set irc.server.NAME.sasl_password PASSWORD, then /reconnect",
    "No account yet? Sign up with the chat client (chat-tui) first.",
)


class Session:
    """One IRC connection from its first line through registration.

    ``feed(msg)`` returns the replies to send, in order. ``registered`` turns true
    with 001; ``nick`` is the nick the client has (None before NICK); ``user`` the
    canonical account once authenticated (None for a guest); ``closing`` is the
    text of the ERROR already sent when the link must be closed (None while
    open): the caller flushes the replies and closes. After that, ``feed``
    ignores everything.

    ``guests`` admits clients without credentials under the nick they ask for;
    this layer cannot see accounts or who is online, so whoever enables it must
    refuse a guest nick that names an account (433) before it is used.
    """

    #: command -> its row; the part that maps chat onto IRC after 001 extends this
    #: table (a subclass or a merged dict) rather than adding branches to ``feed``.

    COMMANDS: ClassVar[Dict[str, Command]] = {
        "CAP": Command("_on_cap", 1, True),
        "AUTHENTICATE": Command("_on_authenticate", 1, True),
        "PASS": Command("_on_pass", 1, True),
        "NICK": Command("_on_nick", 0, True),
        "USER": Command("_on_user", 4, True),
        "PING": Command("_on_ping", 1, True),
        "PONG": Command("_on_pong", 0, True),
        "QUIT": Command("_on_quit", 0, True),
    }

    def __init__(self, backend: Backend, peer: str, guests: bool = False,
                 isupport: Optional[List[str]] = None) -> None:
        self.backend = backend
        self.server = backend.server_name
        self.peer = peer
        self.guests = guests
        self.isupport = isupport if isupport is not None else isupport_tokens()
        self.cap = CapNegotiation(self.server)
        self.registered = False
        self.nick: Optional[str] = None
        self.username: Optional[str] = None   # USER's first parameter (the ident)
        self.realname: Optional[str] = None
        self.user: Optional[str] = None
        self.closing: Optional[str] = None
        self._password: Optional[Tuple[Optional[str], str]] = None   # (name or None, password)
        self._sasl_mechanism: Optional[str] = None
        self._sasl = SaslAccumulator()
        self._sasl_failures = 0

    # ------------------------------------------------------------ dispatch

    def feed(self, msg: Message) -> List[Message]:
        """The replies to one message from the client (nothing once closing)."""
        if self.closing is not None:
            return []
        command = self.COMMANDS.get(msg.command)
        if command is None:
            if not self.registered:
                return [self._numeric(n.ERR_NOTREGISTERED)]
            return [self._numeric(n.ERR_UNKNOWNCOMMAND, msg.command)]
        if not self.registered and not command.pre_registration:
            return [self._numeric(n.ERR_NOTREGISTERED)]
        if len(msg.params) < command.min_params:
            return [self._numeric(n.ERR_NEEDMOREPARAMS, msg.command)]
        handler: Callable[[Message], List[Message]] = getattr(self, command.handler)
        return handler(msg)

    # ------------------------------------------------------------ helpers

    def _numeric(self, code: str, *params: str, text: Optional[str] = None) -> Message:
        return numeric(self.server, self.nick, code, *params, text=text)

    def _message(self, command: str, *params: str) -> Message:
        return Message.build(command, *params, source=self.server)

    def _close(self, reason: str) -> List[Message]:
        """The closing ERROR; the caller closes the link once it is sent."""
        self.closing = f"Closing link: {reason}"
        return [self._message("ERROR", self.closing)]

    def _mask(self) -> str:
        return f"{self.nick or '*'}!{self.username or '*'}@{self.peer}"

    # ------------------------------------------------------------ always usable

    def _on_ping(self, msg: Message) -> List[Message]:
        """PONG with the token, before and after registration (clients ping to
        measure lag and some servers' users ping before 001)."""
        return [self._message("PONG", self.server, msg.params[0])]

    def _on_pong(self, msg: Message) -> List[Message]:
        return []

    def _on_quit(self, msg: Message) -> List[Message]:
        reason = msg.params[0] if msg.params else "Client quit"
        return self._close(f"Quit: {reason}")

    def _on_cap(self, msg: Message) -> List[Message]:
        """CAP LS/REQ hold registration until CAP END, which may complete it."""
        replies = self.cap.handle(msg, self.nick)
        return replies + self._try_register()

    # ------------------------------------------------------------ registration

    def _on_pass(self, msg: Message) -> List[Message]:
        """``PASS password`` (the account is the NICK) or ``PASS username:password``;
        checked when registration completes, since NICK usually comes after.

        A colon after a valid username means the second form, so a password
        that itself holds such a colon needs the second form (or SASL)."""
        if self.registered:
            return [self._numeric(n.ERR_ALREADYREGISTERED)]
        given = msg.params[0]
        name, colon, password = given.partition(":")
        two_part = colon and bool(p.USERNAME_RE.match(name))
        self._password = (name, password) if two_part else (None, given)
        return []

    def _on_nick(self, msg: Message) -> List[Message]:
        if not msg.params or not msg.params[0]:
            return [self._numeric(n.ERR_NONICKNAMEGIVEN)]
        wanted = msg.params[0]
        if self.registered:
            if wanted == self.nick:
                return []
            return [self._nick_locked(wanted)]
        if not valid_nick(wanted):
            return [self._numeric(
                n.ERR_ERRONEUSNICKNAME, wanted,
                text="Erroneous nickname: a nick is 1-32 letters, digits, '_' or '-' "
                     "and starts with a letter or '_'")]
        self.nick = wanted
        return self._try_register()

    def _nick_locked(self, wanted: str) -> Message:
        """The refusal of a nick that is not the account's name, in words."""
        return self._numeric(
            n.ERR_ERRONEUSNICKNAME, wanted,
            text=f"Your nick is your account name: you are logged in as {self.user}; "
                 f"use /nick {self.user}")

    def _on_user(self, msg: Message) -> List[Message]:
        if self.registered:
            return [self._numeric(n.ERR_ALREADYREGISTERED)]
        self.username, self.realname = msg.params[0], msg.params[3]
        return self._try_register()

    def _try_register(self) -> List[Message]:
        """Complete registration once NICK and USER are in and CAP is not on hold:
        authenticate a pending PASS, then welcome, refuse the nick, or close."""
        if (self.registered or self.closing is not None or self.nick is None
                or self.username is None or self.cap.on_hold):
            return []
        if self.user is None and self._password is not None:
            failure = self._check_pass()
            if failure:
                return failure
        if self.user is not None:
            return self._register_account()
        if self.guests:
            return self._welcome()
        return self._refuse_guest()

    def _check_pass(self) -> List[Message]:
        """Authenticate the PASS credentials; 464 and a closing ERROR if refused."""
        assert self._password is not None and self.nick is not None
        name, password = self._password
        self._password = None
        try:
            self.user = self.backend.authenticate(name or self.nick, password, self.peer)
        except p.ChatError as exc:
            return self._pass_refused(exc)
        log.info("IRC login %s from %s (PASS)", self.user, self.peer)
        return []

    def _pass_refused(self, exc: p.ChatError) -> List[Message]:
        log.info("IRC PASS login refused from %s: %s", self.peer, exc.code)
        if exc.code in (p.AUTH_FAILED, p.UNKNOWN_USER):
            return [self._numeric(n.ERR_PASSWDMISMATCH,
                                  text="Password incorrect: wrong username or password"),
                    *self._close("wrong username or password")]
        if exc.code == p.RATE_LIMITED:
            return [self._numeric(n.ERR_PASSWDMISMATCH, text=f"Login refused: {exc.message}"),
                    *self._close(exc.message)]
        return self._close(f"login failed: {exc.message}")

    def _register_account(self) -> List[Message]:
        """Welcome an authenticated client under its account's canonical name."""
        assert self.user is not None and self.nick is not None
        if not valid_nick(self.user):
            return self._close(
                f"your account name {self.user!r} cannot be an IRC nick (a nick starts with "
                "a letter or '_' and holds only letters, digits, '_' and '-'); "
                "use the chat client (chat-tui) for this account")
        if casefold(self.nick) != casefold(self.user):
            refusal = self._nick_locked(self.nick)
            self.nick = None   # registration waits for NICK <account>
            return [refusal]
        self.nick = self.user
        return self._welcome()

    def _refuse_guest(self) -> List[Message]:
        """No credentials and no guests: say how to log in, then close."""
        log.info("IRC connection from %s without credentials refused", self.peer)
        notices = [self._message("NOTICE", self.nick or "*", line) for line in LOGIN_HELP]
        return notices + self._close("this server needs a username and password")

    def _welcome(self) -> List[Message]:
        """001-004, the 005 lines and the MOTD: the end of registration."""
        assert self.nick is not None
        self.registered = True
        self.cap.registered = True
        b = self.backend
        return [
            self._numeric(n.RPL_WELCOME, text=f"Welcome to the parallel-chat IRC gateway, "
                                              f"{self._mask()}"),
            self._numeric(n.RPL_YOURHOST,
                          text=f"Your host is {self.server}, running version {b.version}"),
            self._numeric(n.RPL_CREATED, text=f"This server was created {b.created}"),
            self._numeric(n.RPL_MYINFO, self.server, b.version, USER_MODES, CHANNEL_MODES),
            *isupport_messages(self.server, self.nick, self.isupport),
            *self._motd(),
        ]

    def _motd(self) -> List[Message]:
        lines = self.backend.motd()
        if not lines:
            return [self._numeric(n.ERR_NOMOTD)]
        body = [self._numeric(n.RPL_MOTD, text="- " + _cut(line, MAX_MOTD_LINE_BYTES))
                for line in lines]
        return [self._numeric(n.RPL_MOTDSTART, text=f"- {self.server} Message of the day -"),
                *body, self._numeric(n.RPL_ENDOFMOTD)]

    # ------------------------------------------------------------ SASL

    def _on_authenticate(self, msg: Message) -> List[Message]:
        """IRCv3 SASL: ``AUTHENTICATE PLAIN``, ``+`` from us, then the response."""
        param = msg.params[0]
        if self.user is not None:
            return [self._numeric(n.ERR_SASLALREADY)]
        if self.registered:
            return [self._numeric(n.ERR_SASLFAIL, text="SASL authentication failed: log in "
                                  "before registration; reconnect with your credentials")]
        if self._sasl_mechanism is None:
            return self._sasl_start(param)
        try:
            whole = self._sasl.feed(param)
        except IrcError as exc:
            self._sasl_mechanism = None
            return [self._numeric(exc.code or n.ERR_SASLFAIL)]
        if whole is None:
            return []
        self._sasl_mechanism = None
        return self._sasl_plain(whole)

    def _sasl_start(self, mechanism: str) -> List[Message]:
        if mechanism == "*":
            return [self._numeric(n.ERR_SASLABORTED)]
        if mechanism.upper() != "PLAIN":
            return [self._numeric(n.RPL_SASLMECHS, "PLAIN"), self._numeric(n.ERR_SASLFAIL)]
        self._sasl_mechanism = "PLAIN"
        return [self._message("AUTHENTICATE", "+")]

    def _sasl_plain(self, b64: str) -> List[Message]:
        """Check a whole PLAIN response: 900 and 903, or 904 saying why."""
        try:
            authzid, authcid, password = decode_sasl_plain(b64)
        except IrcError as exc:
            return [self._numeric(n.ERR_SASLFAIL, text=f"SASL authentication failed: "
                                                       f"{exc.reason}")]
        if authzid and authzid != authcid:
            return [self._numeric(n.ERR_SASLFAIL, text="SASL authentication failed: "
                                  "acting for another account is not supported")]
        try:
            self.user = self.backend.authenticate(authcid, password, self.peer)
        except p.ChatError as exc:
            return self._sasl_refused(exc)
        log.info("IRC login %s from %s (SASL)", self.user, self.peer)
        return [self._numeric(n.RPL_LOGGEDIN, self._mask(), self.user,
                              text=f"You are now logged in as {self.user}"),
                self._numeric(n.RPL_SASLSUCCESS)]

    def _sasl_refused(self, exc: p.ChatError) -> List[Message]:
        """904 in words; the client may try again (up to ``MAX_SASL_FAILURES`` wrong
        passwords), or send CAP END and be told how to log in."""
        log.info("IRC SASL login refused from %s: %s", self.peer, exc.code)
        if exc.code in (p.AUTH_FAILED, p.UNKNOWN_USER):
            self._sasl_failures += 1
            refusal = self._numeric(n.ERR_SASLFAIL,
                                    text="SASL authentication failed: wrong username or password")
            if self._sasl_failures >= MAX_SASL_FAILURES:
                return [refusal, *self._close("too many failed logins")]
            return [refusal]
        if exc.code == p.RATE_LIMITED:
            return [self._numeric(n.ERR_SASLFAIL,
                                  text=f"SASL authentication failed: {exc.message}")]
        return [self._numeric(n.ERR_SASLFAIL), *self._close(f"login failed: {exc.message}")]


def _cut(text: str, limit: int) -> str:
    """``text`` on one line (CR, LF and NUL become spaces), cut to at most ``limit``
    UTF-8 bytes, never inside a character."""
    flat = text.replace("\r", " ").replace("\n", " ").replace("\0", " ")
    return flat.encode("utf-8")[:limit].decode("utf-8", "ignore")
