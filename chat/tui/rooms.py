"""Rooms in the client: the room commands, the rooms and members lists, the room events.

A mix-in of ``ChatApp`` (in the manner of socketserver's ``ThreadingMixIn``): it
owns what the client does with rooms and how a refused request is said, and
uses the app's ``state``, ``client`` and ``open``. Every request goes through
``ask_server``, so a refusal always reaches the status bar in words and the
command's line is kept to fix (the command returns False).
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple, TypeVar

from .. import protocol as p
from ..client import ChatClient, RoomInfo
from .commands import Command
from .state import ChatState
from .text import sanitize

T = TypeVar("T")


class RoomCommands:
    """``/join``, ``/part``, ``/create``, ``/invite``, ``/topic``, ``/rooms``, ``/members``,
    and the ``join``/``leave``/``topic``/``invited``/``room`` events."""

    state: ChatState
    client: ChatClient

    def open(self, name: Optional[str]) -> None:   # the app's: open a conversation
        raise NotImplementedError

    def fail(self, text: str) -> bool:
        """Say why not, in the status bar; False, for handlers to return."""
        self.state.set_status(text, error=True)
        return False

    def ask_server(self, what: str, call: Callable[[], T]) -> Tuple[bool, Optional[T]]:
        """One request; (True, its result), or (False, None) with the reason shown.

        While the connection is down it says so at once instead of waiting out the
        request's timeout with the screen frozen (only sends are queued for later)."""
        if getattr(self.client, "state", "connected") != "connected":
            self.fail(f"{what}: not connected; try again once the status bar says "
                      "connected")
            return False, None
        try:
            return True, call()
        except p.ChatError as exc:
            self.fail(f"{what}: {sanitize(exc.message)}")
        except (ConnectionError, TimeoutError) as exc:
            self.fail(f"{what}: {sanitize(str(exc))}")
        return False, None

    def load_rooms(self) -> None:
        """The rooms I am in, with their unread counts, into the conversations list."""
        after: Optional[str] = None
        while True:
            rooms, more = self.client.rooms(after=after)
            for info in rooms:
                if info.joined:
                    self.note_room(info)
            if not more or not rooms:
                return
            after = rooms[-1].room

    def note_room(self, info: RoomInfo) -> None:
        self.state.on_room(info.room, info.topic, info.members, info.private,
                           info.unread, info.mentions > 0)

    def refresh_rooms(self) -> None:
        try:
            self.load_rooms()
        except (p.ChatError, ConnectionError, TimeoutError):
            pass

    def cmd_join(self, cmd: Command) -> bool:
        room = cmd.args[0]
        ok, info = self.ask_server(f"Cannot join {sanitize(room)}", lambda: self.client.join(room))
        if info is not None:
            self.note_room(info)
            self.open(info.room)
        return ok

    def cmd_part(self, cmd: Command) -> bool:
        room = cmd.args[0] if cmd.args else self.state.open_room()
        if room is None:
            return self.fail("No room open: /part #ROOM, or open the room first.")
        ok, _ = self.ask_server(f"Cannot leave {sanitize(room)}", lambda: self.client.leave(room))
        if ok:
            self.state.on_room_left(room)
            self.state.set_status(f"You left {sanitize(room)}.")
        return ok

    def cmd_create(self, cmd: Command) -> bool:
        room, flags = cmd.args[0], cmd.args[1:]
        if flags not in ([], ["private"]):
            return self.fail("usage: /create #ROOM [private]")
        private = True if flags else None
        ok, info = self.ask_server(f"Cannot create {sanitize(room)}",
                                   lambda: self.client.room_create(room, private=private))
        if info is not None:
            self.note_room(info)
            self.open(info.room)
            self.state.set_status(f"Created {sanitize(info.room)}: /invite USER, /topic TEXT.")
        return ok

    def cmd_invite(self, cmd: Command) -> bool:
        room = self.state.open_room()
        if room is None:
            return self.fail("Open a room first (Alt-1…9 or /join #ROOM), then /invite USER.")
        user = cmd.args[0]
        ok, _ = self.ask_server(f"Cannot invite {sanitize(user)}",
                                lambda: self.client.invite(room, user))
        if ok:
            self.state.set_status(f"Invited {sanitize(user)} to {sanitize(room)}.")
        return ok

    def cmd_topic(self, cmd: Command) -> bool:
        room = self.state.open_room()
        if room is None:
            return self.fail("Open a room first, then /topic TEXT.")
        conv = self.state.convs.get(room)
        if not cmd.text:
            topic = conv.topic if conv else ""
            self.state.set_status(f"Topic of {sanitize(room)}: {sanitize(topic) or '(none)'}")
            return True
        ok, info = self.ask_server("Cannot set the topic",
                                   lambda: self.client.topic(room, cmd.text))
        if info is not None:
            self.note_room(info)
            self.state.set_status("Topic set.")
        return ok

    def show_rooms(self) -> bool:
        _, reply = self.ask_server("Cannot list the rooms", lambda: self.client.rooms())
        if reply is None:
            return False
        rooms = reply[0]
        rows = [(f"{'✓' if r.joined else ' '} {r.room} ({r.members})"
                 + (f" {r.topic}" if r.topic else ""), r.room) for r in rooms]
        self.state.open_picker("rooms", f"Rooms ({len(rows)}) · ✓ joined · Enter joins", rows)
        return True

    def show_members(self) -> bool:
        room = self.state.open_room()
        if room is None:
            return self.fail("Open a room first, then /members.")
        _, reply = self.ask_server("Cannot list the members",
                                   lambda: self.client.members(room))
        if reply is None:
            return False
        members = reply[0]
        rows = [(f"{'●' if online else ' '} {name}", name) for name, online in members]
        self.state.open_picker("members", f"{room}: {len(rows)} members · Enter opens", rows)
        return True

    def on_join_event(self, ev: dict) -> None:
        room, who = str(ev.get("room")), str(ev.get("username"))
        if p.user_key(who) == p.user_key(self.state.me):
            self.refresh_rooms()                  # I joined in another session
        else:
            self.state.on_members_changed(room, 1)
            if self.state.is_open(room):
                self.state.set_status(f"{sanitize(who)} joined {sanitize(room)}.")

    def on_leave_event(self, ev: dict) -> None:
        room, who = str(ev.get("room")), str(ev.get("username"))
        if p.user_key(who) == p.user_key(self.state.me):
            self.state.on_room_left(room)
        else:
            self.state.on_members_changed(room, -1)
            if self.state.is_open(room):
                self.state.set_status(f"{sanitize(who)} left {sanitize(room)}.")

    def on_topic_event(self, ev: dict) -> None:
        room, topic = str(ev.get("room")), str(ev.get("topic", ""))
        self.state.on_topic(room, topic)
        if self.state.is_open(room):
            self.state.set_status(f"{sanitize(str(ev.get('by')))} set the topic: "
                                  f"{sanitize(topic)}")

    def on_invited_event(self, ev: dict) -> None:
        room = sanitize(str(ev.get("room")))
        self.state.set_status(f"{sanitize(str(ev.get('by')))} invited you to {room}: "
                              f"/join {room}")

    def on_room_event(self, ev: dict) -> None:
        room = ev.get("room")
        if isinstance(room, dict) and room.get("room"):
            name = sanitize(str(room["room"]))
            self.state.set_status(f"New room {name}: /join {name}")
