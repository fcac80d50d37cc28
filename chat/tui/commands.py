"""Slash commands, the keys and the menu: one table each, and the help made from them.

Pure. The parser checks each command's shape once from its ``Spec`` (how many
words, whether text follows), so the app only ever sees well-formed commands;
``/help`` and ``/help CMD`` are generated from the same tables, so they cannot
forget a command (as the hand-written help once forgot ``/open`` and ``/logout``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple


@dataclass(frozen=True)
class Spec:
    """A command's shape: ``words`` arguments (the first ``required`` of them needed),
    then free text (``text``: "required", "optional" or "" for none)."""

    usage: str
    summary: str
    words: int = 0
    required: int = 0
    text: str = ""


COMMANDS: Dict[str, Spec] = {
    "msg": Spec("/msg USER TEXT", "send TEXT to USER and open that conversation", 1, 1,
                "required"),
    "open": Spec("/open USER|#ROOM", "open the conversation with USER, or a room you are in",
                 1, 1),
    "reply": Spec("/reply TEXT", "reply to the selected message (else the last one received)",
                  text="required"),
    "join": Spec("/join #ROOM", "join a room and open it", 1, 1),
    "part": Spec("/part [#ROOM]", "leave the open room (or #ROOM)", 1, 0),
    "create": Spec("/create #ROOM [private]",
                   "create a room (private: only the invited may join) and open it", 2, 1),
    "invite": Spec("/invite USER", "invite USER to the open room", 1, 1),
    "topic": Spec("/topic [TEXT]", "set the open room's topic (no TEXT: show it)",
                  text="optional"),
    "members": Spec("/members", "who is in the open room"),
    "rooms": Spec("/rooms", "browse the public rooms; Enter joins one"),
    "users": Spec("/users", "every user, ● online; Enter opens a conversation (also F2)"),
    "online": Spec("/online", "the users online now; Enter opens a conversation"),
    "all": Spec("/all", "every message you sent and received, all conversations"),
    "search": Spec("/search TEXT", "find TEXT in every conversation (also Ctrl-R); Enter "
                   "opens the message where it was said", text="required"),
    "beep": Spec("/beep", "the bell for direct messages and mentions on or off (kept)"),
    "help": Spec("/help [COMMAND]", "the keys and commands, or what one command does", 1, 0),
    "logout": Spec("/logout", "log out (asks first), back to the login screen"),
    "quit": Spec("/quit", "quit the client (asks first)"),
    "mute": Spec("/mute [USER|#ROOM]", "no bell for the open conversation (or the one named); "
                 "kept between runs", 1, 0),
    "unmute": Spec("/unmute [USER|#ROOM]", "the bell again for a muted conversation", 1, 0),
}

#: Keys of the main screen, as the help shows them.
KEY_HELP: List[Tuple[str, str]] = [
    ("Alt-1…Alt-9", "open conversation 1…9 of the list on the left"),
    ("Alt-a", "the next conversation with activity (mentions and direct messages first)"),
    ("Ctrl-P / Ctrl-N", "previous / next conversation"),
    ("Tab / Shift-Tab", "next / previous pane; in the input line: complete a name, #room or "
                        "/command, again for the next (Shift-Tab: back)"),
    ("Alt-b / Alt-f", "a word back / forward (or Ctrl-← / Ctrl-→); Ctrl-A / Ctrl-E: start / end"),
    ("Ctrl-W / Ctrl-K", "delete back to a space / to the end (Ctrl-U: to the start; Ctrl-Y: "
                        "put it back)"),
    ("Alt-Bksp / Alt-d", "delete the word before / after the cursor"),
    ("Alt-Enter", "a new line in the message (shown as ⏎)"),
    ("↑/↓ Enter", "choose in a pane; Enter opens a conversation or replies to a message"),
    ("PgUp / PgDn", "scroll the messages; older ones load at the top"),
    ("Home / End", "in the messages pane: the oldest loaded / back to the newest"),
    ("Ctrl-R", "search every conversation as you type; Enter jumps to the message"),
    ("F1", "the help: keys and commands"),
    ("F2", "all users (who is online), Enter opens a conversation"),
    ("F10 or Ctrl-O", "the menu"),
    ("Ctrl-C", "quit (asks first)"),
]

#: The menu (F10): (label, action). Its digits are the item numbers, inside the menu only.
MENU_ITEMS: List[Tuple[str, str]] = [
    ("View all users", "users"),
    ("View users online", "online"),
    ("Browse rooms", "rooms"),
    ("Send a message", "compose"),
    ("View my messages", "all"),
    ("Reply to a message", "reply"),
    ("Help", "help"),
    ("Log out", "logout"),
    ("Quit", "quit"),
]

PASTE_HELP = [
    "Pasted text is never a command: a pasted /quit shows as //quit and is sent as text.",
    "A paste of several lines is one message: Enter sends it, Esc or Ctrl-U drops it.",
]


@dataclass
class Command:
    """A parsed input line: a slash command, or plain text (name "say")."""

    name: str
    args: List[str] = field(default_factory=list)
    text: str = ""


class CommandError(ValueError):
    """An input line that cannot be run; the message says why, for the status bar."""


def parse_command(line: str) -> Command:
    """``/msg bob hi there`` → Command("msg", ["bob"], "hi there"); text → "say".

    ``//text`` is text starting with ``/``. Each command is checked against its
    ``Spec``: a missing word or text is a ``CommandError`` giving the usage.
    """
    if not line.startswith("/") or line.startswith("//"):
        return Command("say", text=line[1:] if line.startswith("//") else line)
    head, _, rest = line[1:].partition(" ")
    name = head.lower()
    spec = COMMANDS.get(name)
    if spec is None:
        raise CommandError(f"unknown command /{head}; /help lists them")
    words: List[str] = []
    rest = rest.strip()
    for _ in range(spec.words):
        if not rest:
            break
        word, _, rest = rest.partition(" ")
        words.append(word)
        rest = rest.strip()
    if len(words) < spec.required or (spec.text == "required" and not rest):
        raise CommandError(f"usage: {spec.usage}")
    if rest and not spec.text:
        raise CommandError(f"usage: {spec.usage}")
    return Command(name, words, rest)


def help_lines() -> List[str]:
    """The whole help: keys, then every command."""
    width = max(len(k) for k, _ in KEY_HELP)
    lines = ["Keys:"] + [f"  {k.ljust(width)}  {what}" for k, what in KEY_HELP]
    usage_w = max(len(s.usage) for s in COMMANDS.values())
    lines.append("Commands (/help COMMAND explains one):")
    lines += [f"  {s.usage.ljust(usage_w)}  {s.summary}" for s in COMMANDS.values()]
    return lines + PASTE_HELP


def help_for(name: str) -> str:
    """``/help join``: the usage and what it does, or why there is no such command."""
    spec = COMMANDS.get(name.lstrip("/").lower())
    if spec is None:
        raise CommandError(f"no command /{name.lstrip('/')}; /help lists them")
    return f"{spec.usage}: {spec.summary}."
