"""The IRC session's registration, driven as irssi and WeeChat connect, without sockets."""
from __future__ import annotations

import base64
from typing import Dict, List, Optional

import pytest

from chat import protocol as p
from chat.irc import numerics as n
from chat.irc.protocol import Message, format_line, parse_line
from chat.irc.session import Session

SERVER = "irc.test"


class FakeBackend:
    """Accounts in a dict (case-insensitive names, canonical spelling kept);
    counts calls; ``limited`` makes every login rate-limited."""

    server_name = SERVER
    version = "parallel-chat-test"
    created = "today"

    def __init__(self, accounts: Optional[Dict[str, str]] = None,
                 motd: Optional[List[str]] = None) -> None:
        self.accounts = accounts if accounts is not None else {"alice": "secret-pw"}
        self.motd_lines = motd
        self.calls: List[tuple] = []
        self.limited = False

    def authenticate(self, name: str, password: str, peer: str) -> str:
        self.calls.append((name, password, peer))
        if self.limited:
            raise p.ChatError(p.RATE_LIMITED, "too many failed logins; try again in 30 s")
        for account, secret in self.accounts.items():
            if account.lower() == name.lower():
                if secret != password:
                    break
                return account
        raise p.ChatError(p.AUTH_FAILED, "wrong username or password")

    def motd(self) -> Optional[List[str]]:
        return self.motd_lines


def wire(line: str) -> Message:
    return parse_line(line.encode("utf-8"))


def run(session: Session, *lines: str) -> List[Message]:
    """Feed client lines; every reply must survive format_line -> parse_line."""
    replies: List[Message] = []
    for line in lines:
        for reply in session.feed(wire(line)):
            assert reply.source == SERVER
            assert parse_line(format_line(reply).rstrip(b"\r\n")) == reply
            replies.append(reply)
    return replies


def commands(replies: List[Message]) -> List[str]:
    return [reply.command for reply in replies]


def sasl_plain(authcid: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode()


def welcome_codes(replies: List[Message]) -> List[str]:
    return [c for c in commands(replies) if c in ("001", "002", "003", "004", "005")]


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


# ---------------------------------------------------------------- irssi with PASS

def test_irssi_with_pass_registers(backend):
    session = Session(backend, "127.0.0.1")
    replies = run(session, "PASS secret-pw", "NICK alice", "USER alice alice 127.0.0.1 :Alice")
    assert welcome_codes(replies) == ["001", "002", "003", "004", "005"]
    assert commands(replies)[-1] == n.ERR_NOMOTD
    assert session.registered and session.user == "alice" and session.nick == "alice"
    assert session.closing is None
    assert all(reply.params[0] == "alice" for reply in replies)
    assert backend.calls == [("alice", "secret-pw", "127.0.0.1")]


def test_motd_is_sent_between_375_and_376():
    backend = FakeBackend(motd=["Hello", "x" * 600])
    replies = run(Session(backend, "::1"), "PASS secret-pw", "NICK alice", "USER a 0 * :A")
    assert commands(replies)[-4:] == [n.RPL_MOTDSTART, n.RPL_MOTD, n.RPL_MOTD, n.RPL_ENDOFMOTD]
    assert replies[-3].params[-1] == "- Hello"


def test_nick_differing_in_case_gets_the_canonical_name(backend):
    session = Session(backend, "127.0.0.1")
    replies = run(session, "PASS secret-pw", "NICK Alice", "USER alice 0 * :Alice")
    assert session.nick == "alice" and replies[0].params[0] == "alice"


# ---------------------------------------------------------------- WeeChat with SASL

def test_weechat_with_sasl_waits_for_cap_end(backend):
    session = Session(backend, "10.0.0.2")
    before = run(session, "CAP LS 302", "NICK alice", "USER alice 0 * :Alice",
                 "CAP REQ :sasl server-time")
    assert commands(before) == ["CAP", "CAP"]
    assert before[-1].params[1:] == ["ACK", "sasl server-time"]
    assert run(session, "AUTHENTICATE PLAIN") == [Message.build("AUTHENTICATE", "+",
                                                                 source=SERVER)]
    sasl = run(session, "AUTHENTICATE " + sasl_plain("alice", "secret-pw"))
    assert commands(sasl) == [n.RPL_LOGGEDIN, n.RPL_SASLSUCCESS]
    assert sasl[0].params[2] == "alice"
    assert not session.registered
    end = run(session, "CAP END")
    assert welcome_codes(end) == ["001", "002", "003", "004", "005"]
    assert session.registered and session.user == "alice"
    assert session.cap.enabled == {"sasl", "server-time"}


def test_authenticate_again_after_success_is_907(backend):
    session = Session(backend, "h")
    run(session, "CAP LS 302", "AUTHENTICATE PLAIN")
    run(session, "AUTHENTICATE " + sasl_plain("alice", "secret-pw"))
    assert commands(run(session, "AUTHENTICATE PLAIN")) == [n.ERR_SASLALREADY]


def test_unknown_mechanism_lists_plain(backend):
    replies = run(Session(backend, "h"), "CAP LS 302", "AUTHENTICATE EXTERNAL")
    assert commands(replies)[-2:] == [n.RPL_SASLMECHS, n.ERR_SASLFAIL]
    assert replies[-2].params[1] == "PLAIN"


def test_sasl_abort_is_906(backend):
    session = Session(backend, "h")
    replies = run(session, "CAP LS 302", "AUTHENTICATE PLAIN", "AUTHENTICATE *")
    assert commands(replies)[-1] == n.ERR_SASLABORTED


def test_sasl_payload_in_400_byte_chunks():
    password = "p" * 370   # authzid NUL authcid NUL password: 377 bytes, 504 in base64
    backend = FakeBackend({"alice": password})
    payload = sasl_plain("alice", password)
    assert len(payload) > 400
    session = Session(backend, "h")
    run(session, "CAP LS 302", "NICK alice", "USER alice 0 * :A", "CAP REQ sasl",
        "AUTHENTICATE PLAIN")
    assert run(session, "AUTHENTICATE " + payload[:400]) == []
    assert backend.calls == []
    replies = run(session, "AUTHENTICATE " + payload[400:])
    assert commands(replies) == [n.RPL_LOGGEDIN, n.RPL_SASLSUCCESS]
    assert welcome_codes(run(session, "CAP END"))[0] == "001"


def test_sasl_chunk_over_400_bytes_is_905(backend):
    session = Session(backend, "h")
    replies = run(session, "CAP LS 302", "AUTHENTICATE PLAIN", "AUTHENTICATE " + "A" * 401)
    assert commands(replies)[-1] == n.ERR_SASLTOOLONG


# ---------------------------------------------------------------- wrong credentials

def test_wrong_password_by_pass_is_464_and_closes(backend):
    session = Session(backend, "h")
    replies = run(session, "PASS nope", "NICK alice", "USER alice 0 * :A")
    assert commands(replies) == [n.ERR_PASSWDMISMATCH, "ERROR"]
    assert session.closing and not session.registered
    assert run(session, "NICK alice") == []


def test_unknown_user_by_pass_looks_like_a_wrong_password(backend):
    replies = run(Session(backend, "h"), "PASS secret-pw", "NICK bob", "USER bob 0 * :B")
    assert commands(replies) == [n.ERR_PASSWDMISMATCH, "ERROR"]


def test_wrong_password_by_sasl_is_904_and_can_retry(backend):
    session = Session(backend, "h")
    run(session, "CAP LS 302", "NICK alice", "USER alice 0 * :A", "CAP REQ :sasl")
    failed = run(session, "AUTHENTICATE PLAIN", "AUTHENTICATE " + sasl_plain("alice", "nope"))
    assert commands(failed) == ["AUTHENTICATE", n.ERR_SASLFAIL]
    assert "wrong username or password" in failed[-1].params[-1]
    assert session.closing is None
    retry = run(session, "AUTHENTICATE PLAIN",
                "AUTHENTICATE " + sasl_plain("alice", "secret-pw"), "CAP END")
    assert n.RPL_SASLSUCCESS in commands(retry) and session.registered


def test_failed_sasl_then_cap_end_says_how_to_log_in(backend):
    session = Session(backend, "h")
    run(session, "CAP LS 302", "NICK alice", "USER alice 0 * :A", "CAP REQ :sasl",
        "AUTHENTICATE PLAIN", "AUTHENTICATE " + sasl_plain("alice", "nope"))
    replies = run(session, "CAP END")
    assert commands(replies)[-1] == "ERROR" and session.closing


def test_rate_limited_is_said_in_words(backend):
    backend.limited = True
    replies = run(Session(backend, "h"), "PASS secret-pw", "NICK alice", "USER a 0 * :A")
    assert commands(replies) == [n.ERR_PASSWDMISMATCH, "ERROR"]
    assert "try again in 30 s" in replies[0].params[-1]
    session = Session(backend, "h")
    sasl = run(session, "CAP LS 302", "AUTHENTICATE PLAIN",
               "AUTHENTICATE " + sasl_plain("alice", "secret-pw"))
    assert sasl[-1].command == n.ERR_SASLFAIL and "try again in 30 s" in sasl[-1].params[-1]


def test_sasl_for_another_authzid_is_refused(backend):
    replies = run(Session(backend, "h"), "CAP LS 302", "AUTHENTICATE PLAIN",
                  "AUTHENTICATE " + sasl_plain("alice", "secret-pw", authzid="bob"))
    assert replies[-1].command == n.ERR_SASLFAIL and backend.calls == []


def test_malformed_sasl_response_is_904(backend):
    replies = run(Session(backend, "h"), "CAP LS 302", "AUTHENTICATE PLAIN",
                  "AUTHENTICATE !!!")
    assert replies[-1].command == n.ERR_SASLFAIL and "base64" in replies[-1].params[-1]


# ---------------------------------------------------------------- no credentials

def test_no_credentials_without_guests_explains_and_closes(backend):
    session = Session(backend, "h")
    replies = run(session, "NICK alice", "USER alice 0 * :A")
    assert commands(replies)[-1] == "ERROR" and set(commands(replies)[:-1]) == {"NOTICE"}
    text = " ".join(reply.params[-1] for reply in replies)
    assert "irssi" in text and "WeeChat" in text
    assert "/connect -password" in text and "-sasl_mechanism PLAIN" in text
    assert "irc.server.NAME.sasl_username" in text and "sasl_password" in text
    assert session.closing and "Closing link" in session.closing and not session.registered
    assert backend.calls == []


def test_guests_register_without_credentials(backend):
    session = Session(backend, "h", guests=True)
    replies = run(session, "NICK visitor", "USER v 0 * :V")
    assert welcome_codes(replies)[0] == "001"
    assert session.registered and session.user is None and session.nick == "visitor"


# ---------------------------------------------------------------- the nick is the account

def test_username_colon_password_form(backend):
    session = Session(backend, "h")
    replies = run(session, "PASS alice:secret-pw", "NICK alice", "USER alice 0 * :A")
    assert welcome_codes(replies)[0] == "001" and session.user == "alice"
    assert backend.calls == [("alice", "secret-pw", "h")]


def test_password_with_a_colon_after_a_non_username(backend):
    backend.accounts["alice"] = "pass word:x"
    session = Session(backend, "h")
    run(session, "PASS :pass word:x", "NICK alice", "USER alice 0 * :A")
    assert session.registered


def test_nick_other_than_the_account_is_refused_in_words(backend):
    session = Session(backend, "h")
    replies = run(session, "PASS alice:secret-pw", "NICK wonder", "USER alice 0 * :A")
    assert commands(replies) == [n.ERR_ERRONEUSNICKNAME]
    assert "logged in as alice" in replies[0].params[-1]
    assert "/nick alice" in replies[0].params[-1]
    assert not session.registered and session.closing is None
    assert welcome_codes(run(session, "NICK alice"))[0] == "001"
    refused = run(session, "NICK wonder")
    assert commands(refused) == [n.ERR_ERRONEUSNICKNAME] and session.nick == "alice"
    assert run(session, "NICK alice") == []


def test_account_name_that_is_not_a_nick_is_closed_with_why():
    backend = FakeBackend({"9lives": "secret-pw"})
    session = Session(backend, "h")
    replies = run(session, "PASS 9lives:secret-pw", "NICK cat", "USER c 0 * :C")
    assert commands(replies) == ["ERROR"]
    assert "cannot be an IRC nick" in replies[0].params[-1] and session.closing


def test_erroneous_nick_is_432(backend):
    session = Session(backend, "h")
    replies = run(session, "NICK 1abc", "NICK")
    assert commands(replies) == [n.ERR_ERRONEUSNICKNAME, n.ERR_NONICKNAMEGIVEN]
    assert session.nick is None


# ---------------------------------------------------------------- before and after 001

def test_commands_before_registration_are_451(backend):
    session = Session(backend, "h")
    replies = run(session, "JOIN #lobby", "PRIVMSG bob :hi", "LIST")
    assert commands(replies) == [n.ERR_NOTREGISTERED] * 3
    assert all(reply.params[0] == "*" for reply in replies)


def test_ping_is_answered_anytime(backend):
    session = Session(backend, "h")
    assert run(session, "PING :abc") == [Message.build("PONG", SERVER, "abc", source=SERVER)]
    run(session, "PASS secret-pw", "NICK alice", "USER alice 0 * :A")
    assert commands(run(session, "PING x")) == ["PONG"]


def test_after_registration_unknown_is_421_and_reregistering_462(backend):
    session = Session(backend, "h")
    run(session, "PASS secret-pw", "NICK alice", "USER alice 0 * :A")
    replies = run(session, "FROB x", "USER a 0 * :A", "PASS x")
    assert commands(replies) == [n.ERR_UNKNOWNCOMMAND, n.ERR_ALREADYREGISTERED,
                                 n.ERR_ALREADYREGISTERED]
    assert replies[0].params[:2] == ["alice", "FROB"]


def test_missing_parameters_are_461(backend):
    replies = run(Session(backend, "h"), "USER alice", "PASS")
    assert commands(replies) == [n.ERR_NEEDMOREPARAMS] * 2


def test_quit_closes(backend):
    session = Session(backend, "h")
    replies = run(session, "QUIT :bye")
    assert commands(replies) == ["ERROR"] and "bye" in session.closing


def test_three_wrong_sasl_passwords_close_the_link(backend):
    session = Session(backend, "h")
    run(session, "CAP LS 302", "CAP REQ :sasl")
    wrong = ("AUTHENTICATE PLAIN", "AUTHENTICATE " + sasl_plain("alice", "no"))
    for _ in range(2):
        assert commands(run(session, *wrong))[-1] == n.ERR_SASLFAIL and not session.closing
    replies = run(session, *wrong)
    assert commands(replies)[-2:] == [n.ERR_SASLFAIL, "ERROR"] and session.closing
    assert len(backend.calls) == 3


def test_guest_cannot_authenticate_after_registration(backend):
    session = Session(backend, "h", guests=True)
    run(session, "NICK visitor", "USER v 0 * :V")
    replies = run(session, "AUTHENTICATE PLAIN")
    assert commands(replies) == [n.ERR_SASLFAIL] and session.user is None


def test_irssi_with_cap_ls_and_pass_registers_at_cap_end(backend):
    session = Session(backend, "h")
    held = run(session, "CAP LS 302", "PASS secret-pw", "NICK alice", "USER alice alice h :A")
    assert commands(held) == ["CAP"] and backend.calls == []
    assert welcome_codes(run(session, "CAP END"))[0] == "001" and session.user == "alice"
