"""The settings people change in the client, kept between runs in a small JSON file.

What is kept: the beep, the muted conversations (people and ``#rooms``), and the
server and user of the last login, so the next start needs no retyping. The
file lives in the platform's config folder (``config_dir``): XDG on Linux and
the BSDs, ``%APPDATA%`` on Windows, ``~/Library/Application Support`` on macOS.

The file, for example::

    {"beep": true, "last_host": "chat.example.org", "last_port": 5050,
     "last_user": "carol", "muted": ["#random", "dave"], "version": 1}

Muted names are stored case-folded, as the server compares names
(``protocol.user_key``): muting ``Dave`` mutes ``dave``.

**A file the client cannot use never stops the client.** ``load`` returns the
defaults for a missing file without a word; for a damaged one (not UTF-8, not
JSON, not an object, larger than ``MAX_BYTES``, not a regular file, unreadable)
it returns the defaults plus a warning in words. A value of the wrong type
falls back to its default alone, the other fields are kept; a bad entry in
``muted`` is left out, the good ones are kept. The damaged file is left as it
is until the next ``save`` replaces it.

**Versions.** ``"version": 1`` is this format. Adding a key is a compatible
change and keeps the version: a client that does not know the key ignores it,
keeps it in ``Settings.extra`` and writes it back unchanged, so switching
between an older and a newer client loses nothing. A key's meaning never
changes under the same version; an incompatible change bumps it. A later
version reading an older file migrates it (the keys it knows keep their old
meaning, new ones take their defaults) and writes its own version on the next
save. This module, reading a file from a later version, uses what it
understands, says so in the warning, and refuses to save over that file
(``SettingsError``), so an older client never spoils a newer one's settings.
A missing ``version`` is read as 1.

**Saving is atomic** (``save``): the new file is written beside the old one,
flushed and fsynced, then renamed over it with ``os.replace``, and the folder
is fsynced where the platform allows. A crash, a full disk or a read-only
folder leaves the old file whole and no temporary file behind. The folder is
created 0o700 and the file 0o600 (POSIX), since they name who you talk to.
Not promised: two clients saving at once are not merged; the last ``save``
wins a whole file (``update`` re-reads first, which narrows that window).
"""
from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Tuple,
    Union,
)

APP_NAME = "parallel-chat"
FILE_NAME = "settings.json"
#: The format this module reads and writes (see the module docstring).
VERSION = 1
#: A larger file is refused whole by ``load`` (and never written by ``save``):
#: the settings fit in a few hundred bytes, so more is damage, not data.
MAX_BYTES = 64 * 1024
#: Longest muted name or user name accepted (the server's are at most 33).
MAX_NAME_CHARS = 64
#: Longest host accepted (a DNS name is at most 253 characters).
MAX_HOST_CHARS = 255

PathLike = Union[str, os.PathLike]


# -- where -------------------------------------------------------------------------------------

def config_dir(env: Mapping[str, str] = os.environ, platform: str = sys.platform,
               home: Optional[PathLike] = None) -> Path:
    """The folder of the client's settings on this platform.

    Pure given its arguments, so each platform's rule can be tested anywhere.
    Only when neither ``home`` nor the home variable (``HOME``, or
    ``USERPROFILE`` on Windows) is given does it ask ``Path.home()``.
    A relative ``XDG_CONFIG_HOME`` or ``APPDATA`` is ignored, as the XDG
    specification asks: a config folder that moves with the working directory
    would lose the settings.
    """
    if platform == "win32":
        appdata = env.get("APPDATA", "")
        if appdata and PureWindowsPath(appdata).is_absolute():
            return Path(appdata) / APP_NAME
        return _home(env, platform, home) / "AppData" / "Roaming" / APP_NAME
    if platform == "darwin":
        return _home(env, platform, home) / "Library" / "Application Support" / APP_NAME
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and PurePosixPath(xdg).is_absolute():
        return Path(xdg) / APP_NAME
    return _home(env, platform, home) / ".config" / APP_NAME


def settings_path(env: Mapping[str, str] = os.environ, platform: str = sys.platform,
                  home: Optional[PathLike] = None) -> Path:
    """The settings file: ``settings.json`` in ``config_dir``."""
    return config_dir(env, platform, home) / FILE_NAME


def _home(env: Mapping[str, str], platform: str, home: Optional[PathLike]) -> Path:
    if home is not None:
        return Path(home)
    value = env.get("USERPROFILE" if platform == "win32" else "HOME", "")
    return Path(value) if value else Path.home()


# -- what --------------------------------------------------------------------------------------

def fold(conversation: str) -> str:
    """The key a conversation is muted under: names are compared regardless of case,
    the same folding as ``protocol.user_key`` and ``protocol.conversation_key``."""
    return conversation.lower()


def is_valid_name(name: Any) -> bool:
    """Whether ``name`` can be a user or room name kept in the file: one printable word,
    so a hand-edited or damaged file cannot smuggle control characters to the screen."""
    return (isinstance(name, str) and 0 < len(name) <= MAX_NAME_CHARS and name.isprintable()
            and not any(ch.isspace() for ch in name) and _is_utf8(name))


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:     # a lone surrogate, from a "\udc80" escape in the JSON
        return False
    return True


@dataclass(frozen=True)
class Settings:
    """One snapshot of the settings. Frozen: change it with ``with_mute``,
    ``with_last_login`` or ``dataclasses.replace``, then ``save`` the result."""

    beep: bool = True
    #: Case-folded names (``fold``) of muted people and ``#rooms``; any iterable is accepted.
    muted: FrozenSet[str] = frozenset()
    last_host: Optional[str] = None
    last_port: Optional[int] = None
    last_user: Optional[str] = None
    #: The version of the file these came from; ``save`` refuses a version it does not know.
    version: int = VERSION
    #: Keys of the file this version does not know, written back unchanged by ``save``.
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "muted", frozenset(fold(name) for name in self.muted))

    def is_muted(self, conversation: str) -> bool:
        """Whether a conversation (``carol`` or ``#team``, any case) is muted."""
        return fold(conversation) in self.muted

    def with_mute(self, conversation: str, muted: bool = True) -> Settings:
        """These settings with ``conversation`` muted (or unmuted).

        Raises ``ValueError`` for a name ``load`` would refuse, so what is saved
        always loads again.
        """
        if not is_valid_name(conversation):
            raise ValueError(f"{conversation!r} is not a user or room name")
        key = fold(conversation)
        return replace(self, muted=(self.muted | {key}) if muted else (self.muted - {key}))

    def with_last_login(self, host: str, port: int, user: str) -> Settings:
        """These settings remembering a successful login, for the next start's defaults."""
        return replace(self, last_host=host, last_port=port, last_user=user)


class SettingsError(OSError):
    """Saving failed. ``str()`` is a sentence to show the user; ``errno`` is the cause's
    (``errno.ENOSPC`` for a full disk, ``errno.EACCES`` for a read-only folder) or None."""

    def __init__(self, message: str, errno: Optional[int] = None) -> None:
        super().__init__(message)
        self.errno = errno


class Loaded(NamedTuple):
    """What ``load`` found: the settings to use, and a warning for the user or None."""

    settings: Settings
    warning: Optional[str]


# -- reading -----------------------------------------------------------------------------------

class _Damaged(ValueError):
    """A field's value cannot be used; ``keep`` is the part that can (else the default)."""

    def __init__(self, reason: str, keep: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.keep = keep


def _read_beep(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise _Damaged("is not true or false")
    return raw


def _read_muted(raw: Any) -> FrozenSet[str]:
    if not isinstance(raw, list):
        raise _Damaged("is not a list of names")
    names = frozenset(fold(name) for name in raw if is_valid_name(name))
    dropped = sum(1 for name in raw if not is_valid_name(name))
    if dropped:
        raise _Damaged(f"has {dropped} entr{'y' if dropped == 1 else 'ies'} that "
                       f"{'is' if dropped == 1 else 'are'} not names", keep=names)
    return names


def _read_host(raw: Any) -> Optional[str]:
    if raw is None:
        return None
    if not (isinstance(raw, str) and 0 < len(raw) <= MAX_HOST_CHARS and raw.isprintable()
            and " " not in raw and _is_utf8(raw)):
        raise _Damaged("is not a host name")
    return raw


def _read_port(raw: Any) -> Optional[int]:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 65535:
        raise _Damaged("is not a port number from 1 to 65535")
    return raw


def _read_user(raw: Any) -> Optional[str]:
    if raw is not None and not is_valid_name(raw):
        raise _Damaged("is not a user name")
    return raw


#: key -> how its value is read; a key not here is kept in ``Settings.extra``.
_READERS: Dict[str, Callable[[Any], Any]] = {
    "beep": _read_beep,
    "muted": _read_muted,
    "last_host": _read_host,
    "last_port": _read_port,
    "last_user": _read_user,
}
_DEFAULTS = Settings()


def load(path: PathLike) -> Loaded:
    """The settings in ``path``, never raising for anything the file holds.

    A missing file gives the defaults and no warning. Any other trouble gives
    the defaults for what could not be read and a warning in words, such as
    "settings file X was damaged (it is not JSON); using the defaults for every
    setting". The path in the warning is as given: sanitise it before drawing it.
    """
    try:
        doc = _read_object(path)
    except FileNotFoundError:
        return Loaded(Settings(), None)
    except _Damaged as damage:
        return Loaded(Settings(), f"settings file {path} {damage.reason}; "
                                  "using the defaults for every setting")
    settings, problems = _settings_from(doc)
    return Loaded(settings, _warning(path, settings, problems))


def _read_object(path: PathLike) -> Dict[str, Any]:
    """The file's JSON object, or ``_Damaged`` saying in words why there is none."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):   # before opening: a FIFO would block
            raise _Damaged("is not a regular file")
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _Damaged(f"could not be read ({exc.strerror or exc})") from exc
    if len(data) > MAX_BYTES:
        raise _Damaged(f"was damaged (it is larger than {MAX_BYTES // 1024} KiB)")
    try:
        text = data.decode("utf-8-sig")     # -sig: Notepad's byte order mark is not damage
    except UnicodeDecodeError as exc:
        raise _Damaged("was damaged (it is not UTF-8 text)") from exc
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:   # RecursionError: "[[[[..." nested too deep
        raise _Damaged("was damaged (it is not JSON)") from exc
    if not isinstance(doc, dict):
        raise _Damaged("was damaged (it is not a JSON object)")
    return doc


def _settings_from(doc: Dict[str, Any]) -> Tuple[Settings, List[str]]:
    """Settings from a JSON object, field by field, and what was wrong with it."""
    values: Dict[str, Any] = {}
    problems: List[str] = []
    for key, read in _READERS.items():
        if key not in doc:
            continue
        try:
            values[key] = read(doc[key])
        except _Damaged as damage:
            if damage.keep is None:
                problems.append(f"{key} {damage.reason} (using the default)")
            else:
                values[key] = damage.keep
                problems.append(f"{key} {damage.reason} (left out)")
    version = doc.get("version", VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        problems.append("version is not a whole number from 1 up (read as 1)")
        version = VERSION
    extra = {k: v for k, v in doc.items() if k not in _READERS and k != "version"}
    return Settings(version=version, extra=extra, **values), problems


def _warning(path: PathLike, settings: Settings, problems: Iterable[str]) -> Optional[str]:
    sentences = []
    problems = list(problems)
    if problems:
        sentences.append(f"settings file {path} was damaged: " + "; ".join(problems))
    if settings.version > VERSION:
        sentences.append(f"settings file {path} is from a newer parallel-chat (file version "
                         f"{settings.version}); using what this version understands, and "
                         "changes will not be saved to it")
    return ". ".join(sentences) or None


# -- writing -----------------------------------------------------------------------------------

def save(path: PathLike, settings: Settings) -> None:
    """Write ``settings`` to ``path`` atomically (see the module docstring).

    Creates the folder (0o700) if needed. Raises ``SettingsError`` (an
    ``OSError``) whose text says what failed in words, for a full disk, a
    read-only folder, a file from a newer version or settings too large to
    load again; the old file is then untouched. A symbolic link at ``path``
    (dotfile managers make them) is kept: the file it points to is replaced.
    """
    if settings.version > VERSION:
        raise SettingsError(f"not saving settings to {path}: it is from a newer parallel-chat "
                            f"(file version {settings.version})")
    data = _encode(settings)
    target = Path(os.path.realpath(path))
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _replace_atomically(target, data)
    except OSError as exc:
        raise SettingsError(f"could not save settings to {path}: {exc.strerror or exc}",
                            exc.errno) from exc


def update(path: PathLike, change: Callable[[Settings], Settings]) -> Settings:
    """Re-read the file, apply ``change``, save, and return the result.

    For a change made while the client runs (``/mute``, ``/beep``): another
    client's changes saved since this one started are kept, not overwritten
    with an old snapshot. Raises ``SettingsError`` as ``save`` does.
    """
    changed = change(load(path).settings)
    save(path, changed)
    return changed


def _encode(settings: Settings) -> bytes:
    """The file's bytes; never more than ``MAX_BYTES``, so what is saved loads again.
    Keys from a newer client are dropped rather than refuse to save ours."""
    for extra in (settings.extra, {}):
        doc: Dict[str, Any] = dict(extra)
        doc.update(version=VERSION, beep=settings.beep, muted=sorted(settings.muted),
                   last_host=settings.last_host, last_port=settings.last_port,
                   last_user=settings.last_user)
        data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("ascii")
        if len(data) <= MAX_BYTES:
            return data
    raise SettingsError(f"the settings would be larger than {MAX_BYTES // 1024} KiB "
                        f"({len(settings.muted)} muted conversations); not saved")


def _replace_atomically(target: Path, data: bytes) -> None:
    """Write a temporary file beside ``target``, fsync it, rename it over ``target``.
    mkstemp creates it 0o600; it is removed if anything fails before the rename."""
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename durable where the platform can: Windows cannot open a folder,
    and some file systems refuse to fsync one. The file is already in place, so a
    failure here is not reported as a failed save."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
