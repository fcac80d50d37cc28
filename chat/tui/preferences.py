"""The settings file wired to the running client: what it says, and saving each change.

``settings.py`` reads and writes the file; this holds the snapshot in use and
the one-run overrides (``--no-beep`` silences this run without being saved).
Each change (``/beep``, ``/mute``, a successful login) is saved at once with
``settings.update``, so a second client's changes are kept. A change that
cannot be saved still applies to this run, and the reason is returned in
words for the notice line. Without a path (tests, stand-in apps) nothing is
read or written.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

from . import settings as st


class Preferences:
    """The settings for this run, saved on each change."""

    def __init__(self, path: Optional[Path] = None, no_beep: bool = False) -> None:
        self.path = path
        self.no_beep = no_beep
        self.warning: Optional[str] = None
        self.settings = st.Settings()
        if path is not None:
            self.settings, self.warning = st.load(path)

    @classmethod
    def from_environment(cls, no_beep: bool = False) -> "Preferences":
        """The settings file in the platform's config folder (``XDG_CONFIG_HOME`` …)."""
        return cls(st.settings_path(), no_beep)

    @property
    def beep(self) -> bool:
        """The bell for this run: the saved choice, unless ``--no-beep`` said otherwise."""
        return self.settings.beep and not self.no_beep

    def set_beep(self, on: bool) -> Optional[str]:
        """``/beep``: on or off, now and from now on (it ends a ``--no-beep``)."""
        self.no_beep = False
        return self._change(lambda s: replace(s, beep=on))

    def is_muted(self, conversation: str) -> bool:
        return self.settings.is_muted(conversation)

    def mute(self, conversation: str, muted: bool = True) -> Optional[str]:
        """``/mute`` and ``/unmute``; a name the file cannot hold is refused in words."""
        if not st.is_valid_name(conversation):
            return f"{conversation!r} cannot be muted: not a user or room name"
        return self._change(lambda s: s.with_mute(conversation, muted))

    def remember_login(self, host: str, port: int, user: str) -> Optional[str]:
        """A successful login: next start's defaults on the login screen."""
        if not st.is_valid_name(user) or len(host) > st.MAX_HOST_CHARS:
            return None
        return self._change(lambda s: s.with_last_login(host, port, user))

    def _change(self, change: Callable[[st.Settings], st.Settings]) -> Optional[str]:
        self.settings = change(self.settings)
        if self.path is None:
            return None
        try:
            self.settings = st.update(self.path, change)
        except st.SettingsError as exc:
            return str(exc)
        return None

