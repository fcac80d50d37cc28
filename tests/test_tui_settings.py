"""The client's settings file: where it lives, what survives damage, and atomic saving."""
from __future__ import annotations

import errno
import json
import os
import stat
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from chat.tui import settings as settings_mod
from chat.tui.settings import (
    MAX_BYTES,
    Settings,
    SettingsError,
    config_dir,
    load,
    save,
    settings_path,
    update,
)

POSIX = os.name == "posix"
ROOT = POSIX and os.geteuid() == 0
FULL = Settings(beep=False, muted=frozenset({"#team", "dave"}), last_host="chat.example.org",
                last_port=6000, last_user="carol")


def write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content),
                        encoding="utf-8")
    return path


def leftovers(folder: Path) -> list:
    """Anything in the folder besides the settings file: a temporary file left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name != "settings.json")


# -- where -------------------------------------------------------------------------------------

@pytest.mark.parametrize("platform, env, expected", [
    ("linux", {"XDG_CONFIG_HOME": "/xdg"}, "/xdg/parallel-chat"),
    ("linux", {}, "/home/u/.config/parallel-chat"),
    ("linux", {"XDG_CONFIG_HOME": ""}, "/home/u/.config/parallel-chat"),
    ("linux", {"XDG_CONFIG_HOME": "relative/dir"}, "/home/u/.config/parallel-chat"),
    ("freebsd13", {"XDG_CONFIG_HOME": "/xdg"}, "/xdg/parallel-chat"),
    ("openbsd7", {}, "/home/u/.config/parallel-chat"),
    ("darwin", {}, "/home/u/Library/Application Support/parallel-chat"),
    ("darwin", {"XDG_CONFIG_HOME": "/xdg"}, "/home/u/Library/Application Support/parallel-chat"),
])
def test_config_folder_on_posix_platforms(platform, env, expected):
    assert config_dir(env, platform, home="/home/u") == Path(expected)


def test_config_folder_on_windows_is_appdata():
    env = {"APPDATA": r"C:\Users\u\AppData\Roaming"}
    assert config_dir(env, "win32", home=r"C:\Users\u") == \
        Path(r"C:\Users\u\AppData\Roaming") / "parallel-chat"


@pytest.mark.parametrize("env", [{}, {"APPDATA": ""}, {"APPDATA": r"relative\dir"}])
def test_config_folder_on_windows_without_appdata_is_under_the_profile(env):
    assert config_dir(env, "win32", home=r"C:\Users\u") == \
        Path(r"C:\Users\u") / "AppData" / "Roaming" / "parallel-chat"


def test_home_comes_from_the_given_environment():
    assert config_dir({"HOME": "/h"}, "linux") == Path("/h/.config/parallel-chat")
    assert config_dir({"USERPROFILE": r"C:\Users\v"}, "win32") == \
        Path(r"C:\Users\v") / "AppData" / "Roaming" / "parallel-chat"


def test_settings_path_is_a_json_file_in_the_config_folder():
    assert settings_path({"XDG_CONFIG_HOME": "/xdg"}, "linux") == \
        Path("/xdg/parallel-chat/settings.json")


# -- the record --------------------------------------------------------------------------------

def test_defaults_beep_and_mute_nothing():
    s = Settings()
    assert s.beep is True and s.muted == frozenset()
    assert (s.last_host, s.last_port, s.last_user) == (None, None, None)


def test_mutes_are_case_insensitive():
    s = Settings().with_mute("Dave").with_mute("#Team")
    assert s.is_muted("dave") and s.is_muted("DAVE") and s.is_muted("#team")
    assert not s.is_muted("carol")
    s = s.with_mute("dAVE", muted=False)
    assert not s.is_muted("Dave") and s.muted == frozenset({"#team"})
    assert Settings(muted={"Carol", "carol", "CAROL"}).muted == frozenset({"carol"})


def test_muting_twice_or_unmuting_what_is_not_muted_changes_nothing():
    s = Settings().with_mute("dave")
    assert s.with_mute("Dave") == s
    assert Settings().with_mute("dave", muted=False) == Settings()


@pytest.mark.parametrize("name", ["", "two words", "bell\x07", "x" * 65, "lone\udc80"])
def test_a_name_that_would_not_load_again_cannot_be_muted(name):
    with pytest.raises(ValueError):
        Settings().with_mute(name)


def test_with_last_login_remembers_server_and_user():
    s = Settings().with_last_login("localhost", 5050, "carol")
    assert (s.last_host, s.last_port, s.last_user) == ("localhost", 5050, "carol")


# -- loading -----------------------------------------------------------------------------------

def test_a_missing_file_gives_the_defaults_and_no_warning(tmp_path):
    path = tmp_path / "nowhere" / "settings.json"
    assert load(path) == (Settings(), None)
    assert not path.parent.exists()          # loading creates nothing


def test_round_trip_keeps_every_setting(tmp_path):
    path = tmp_path / "parallel-chat" / "settings.json"
    save(path, FULL)
    assert load(path) == (FULL, None)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["version"] == 1
    assert doc["muted"] == ["#team", "dave"]


WHOLE_FILE_DAMAGE = [
    ("not JSON", b'{"beep": fal', "not JSON"),
    ("empty", b"", "not JSON"),
    ("a list", b"[1, 2]", "not a JSON object"),
    ("a string", b'"beep"', "not a JSON object"),
    ("null", b"null", "not a JSON object"),
    ("not UTF-8", b'{"last_user": "\xff\xfe"}', "not UTF-8"),
    ("1 MB", b'{"muted": ["' + b"a" * 1_000_000 + b'"]}', "larger than 64 KiB"),
    ("nested too deep", b"[" * MAX_BYTES, "not JSON"),
]


@pytest.mark.parametrize("content, reason", [(c, r) for _, c, r in WHOLE_FILE_DAMAGE],
                         ids=[name for name, _, _ in WHOLE_FILE_DAMAGE])
def test_a_damaged_file_gives_the_defaults_and_a_warning(tmp_path, content, reason):
    path = write(tmp_path / "settings.json", content)
    settings, warning = load(path)
    assert settings == Settings()
    assert str(path) in warning and reason in warning
    assert "using the defaults for every setting" in warning


def test_a_file_just_under_the_limit_is_read(tmp_path):
    doc = json.dumps({"beep": False, "pad": "x" * (MAX_BYTES - 100)}).encode()
    assert len(doc) <= MAX_BYTES
    assert load(write(tmp_path / "settings.json", doc)).settings.beep is False


def test_a_folder_where_the_file_should_be_gives_the_defaults(tmp_path):
    path = tmp_path / "settings.json"
    path.mkdir()
    settings, warning = load(path)
    assert settings == Settings() and "not a regular file" in warning


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    path = tmp_path / "settings.json"
    os.mkfifo(path)
    settings, warning = load(path)
    assert settings == Settings() and "not a regular file" in warning


@pytest.mark.skipif(not POSIX or ROOT, reason="needs POSIX permissions, not root")
def test_an_unreadable_file_gives_the_defaults_and_says_why(tmp_path):
    path = write(tmp_path / "settings.json", {"beep": False})
    path.chmod(0)
    settings, warning = load(path)
    assert settings == Settings() and "could not be read" in warning


GOOD = {"version": 1, "beep": False, "muted": ["dave"], "last_host": "h.example",
        "last_port": 6000, "last_user": "carol"}
WRONG_TYPES = [
    ("beep", "yes"), ("beep", 0), ("beep", None),
    ("muted", "dave"), ("muted", {"dave": True}), ("muted", None),
    ("last_host", 42), ("last_host", ""), ("last_host", "evil\x1b[2J"), ("last_host", "x" * 300),
    ("last_port", "6000"), ("last_port", 0), ("last_port", 65536), ("last_port", True),
    ("last_port", 6000.5),
    ("last_user", ["carol"]), ("last_user", "car ol"), ("last_user", "\u202ecarol"),
]


@pytest.mark.parametrize("key, bad", WRONG_TYPES)
def test_a_wrong_value_falls_back_to_its_default_alone(tmp_path, key, bad):
    good = load(write(tmp_path / "good.json", GOOD)).settings
    path = write(tmp_path / "settings.json", {**GOOD, key: bad})
    settings, warning = load(path)
    assert settings == replace(good, **{key: getattr(Settings(), key)})
    assert f"{key} is not" in warning and "using the default" in warning
    assert str(path) in warning


def test_bad_mute_entries_are_left_out_and_good_ones_kept(tmp_path):
    path = write(tmp_path / "settings.json",
                 {"muted": ["Dave", 7, "", "two words", None, "#team", "bell\x07"]})
    settings, warning = load(path)
    assert settings.muted == frozenset({"dave", "#team"})
    assert "muted has 5 entries that are not names (left out)" in warning


def test_null_last_login_fields_are_not_damage(tmp_path):
    path = write(tmp_path / "settings.json",
                 {"version": 1, "last_host": None, "last_port": None, "last_user": None})
    assert load(path) == (Settings(), None)


def test_a_file_without_a_version_is_read_as_version_1(tmp_path):
    path = write(tmp_path / "settings.json", {"beep": False})
    assert load(path) == (Settings(beep=False), None)


@pytest.mark.parametrize("version", ["1", 0, -3, 1.5, True, None])
def test_a_bad_version_is_read_as_1_with_a_warning(tmp_path, version):
    path = write(tmp_path / "settings.json", {"version": version, "beep": False})
    settings, warning = load(path)
    assert settings.beep is False and settings.version == 1
    assert "version is not a whole number" in warning


def test_a_byte_order_mark_from_notepad_is_not_damage(tmp_path):
    path = write(tmp_path / "settings.json", b'\xef\xbb\xbf{"beep": false}')
    assert load(path) == (Settings(beep=False), None)


# -- versions and unknown keys -----------------------------------------------------------------

def test_unknown_keys_are_kept_when_saving(tmp_path):
    path = write(tmp_path / "settings.json", {**GOOD, "theme": "dark", "nick_colours": [1, 2]})
    settings, warning = load(path)
    assert warning is None
    save(path, settings.with_mute("erin"))
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["theme"] == "dark" and doc["nick_colours"] == [1, 2]
    assert doc["muted"] == ["dave", "erin"]


def test_an_unknown_key_cannot_override_a_known_one(tmp_path):
    path = tmp_path / "settings.json"
    save(path, Settings(beep=False, extra={"beep": True, "version": 9}))
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["beep"] is False and doc["version"] == 1


def test_a_newer_file_is_read_as_far_as_understood_and_never_overwritten(tmp_path):
    path = write(tmp_path / "settings.json", {**GOOD, "version": 2, "new_thing": 1})
    before = path.read_bytes()
    settings, warning = load(path)
    assert settings.beep is False and settings.last_user == "carol" and settings.version == 2
    assert "newer parallel-chat" in warning and "will not be saved" in warning
    with pytest.raises(SettingsError, match="newer parallel-chat"):
        save(path, settings.with_mute("erin"))
    assert path.read_bytes() == before


# -- saving ------------------------------------------------------------------------------------

def test_save_creates_the_folders(tmp_path):
    path = tmp_path / "config" / "parallel-chat" / "settings.json"
    save(path, FULL)
    assert load(path).settings == FULL


@pytest.mark.skipif(not POSIX, reason="POSIX permissions")
def test_the_folder_is_private_and_the_file_too(tmp_path):
    path = tmp_path / "parallel-chat" / "settings.json"
    save(path, FULL)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.skipif(not POSIX, reason="POSIX permissions")
def test_saving_over_a_world_readable_file_makes_it_private(tmp_path):
    path = write(tmp_path / "settings.json", {"beep": True})
    path.chmod(0o644)
    save(path, FULL)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_symlinked_settings_file_stays_a_link(tmp_path):
    target = write(tmp_path / "dotfiles" / "chat.json", {"beep": True})
    path = tmp_path / "parallel-chat" / "settings.json"
    path.parent.mkdir()
    path.symlink_to(target)
    save(path, FULL)
    assert path.is_symlink()
    assert load(target).settings == FULL


def fail_with(code: int):
    def fail(*_args, **_kwargs):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize("seam, code", [
    ("replace", errno.ENOSPC),      # the rename fails
    ("fsync", errno.EIO),           # the data never reached the disk
])
def test_a_failed_save_leaves_the_old_file_whole_and_no_temporary_file(
        tmp_path, monkeypatch, seam, code):
    path = tmp_path / "settings.json"
    save(path, FULL)
    before = path.read_bytes()
    monkeypatch.setattr(settings_mod.os, seam, fail_with(code))
    with pytest.raises(SettingsError) as caught:
        save(path, Settings())
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
    assert caught.value.errno == code
    assert str(caught.value) == f"could not save settings to {path}: {os.strerror(code)}"
    assert isinstance(caught.value, OSError)


def test_a_full_disk_mid_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "settings.json"
    save(path, FULL)
    before = path.read_bytes()
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(settings_mod.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(SettingsError, match="No space left on device"):
        save(path, Settings())
    monkeypatch.undo()
    assert path.read_bytes() == before and leftovers(tmp_path) == []


def test_a_read_only_folder_is_an_error_in_words(tmp_path, monkeypatch):
    """The seam a read-only folder fails at (creating the temporary file), simulated so
    that it also holds when the tests run as root."""
    path = write(tmp_path / "settings.json", {"beep": False})
    monkeypatch.setattr(settings_mod.tempfile, "mkstemp", fail_with(errno.EROFS))
    with pytest.raises(SettingsError, match="could not save settings to .*: Read-only"):
        save(path, FULL)
    monkeypatch.undo()
    assert load(path).settings == Settings(beep=False)


@pytest.mark.skipif(not POSIX or ROOT, reason="needs POSIX permissions, not root")
def test_a_read_only_folder_really(tmp_path):
    folder = tmp_path / "parallel-chat"
    path = write(folder / "settings.json", {"beep": False})
    folder.chmod(0o500)
    try:
        with pytest.raises(SettingsError) as caught:
            save(path, FULL)
    finally:
        folder.chmod(0o700)
    assert caught.value.errno == errno.EACCES
    assert load(path).settings == Settings(beep=False) and leftovers(folder) == []


def test_a_file_where_the_folder_should_be_is_an_error_in_words(tmp_path):
    write(tmp_path / "parallel-chat", "not a folder")
    with pytest.raises(SettingsError, match="could not save settings"):
        save(tmp_path / "parallel-chat" / "settings.json", FULL)


def test_what_is_saved_always_loads_again(tmp_path):
    path = tmp_path / "settings.json"
    big = Settings(muted=frozenset(f"user{i:05d}" for i in range(MAX_BYTES // 8)))
    with pytest.raises(SettingsError, match="larger than 64 KiB"):
        save(path, big)
    assert not path.exists() and leftovers(tmp_path) == []
    ok = Settings(muted=frozenset(f"user{i:05d}" for i in range(1000)),
                  extra={"from_a_newer_client": "x" * (MAX_BYTES - 1000)})
    save(path, ok)
    settings, warning = load(path)
    assert warning is None and settings.muted == ok.muted
    assert settings.extra == {}          # the newer client's key gave way to ours


def test_update_keeps_changes_another_client_saved_meanwhile(tmp_path):
    path = tmp_path / "settings.json"
    mine = Settings()                    # this client started with the defaults
    save(path, Settings().with_mute("dave"))   # another client muted dave since
    result = update(path, lambda s: s.with_mute("#team"))
    assert result.muted == frozenset({"dave", "#team"}) == load(path).settings.muted
    assert mine.muted == frozenset()


def test_the_module_uses_only_the_standard_library():
    source = Path(settings_mod.__file__).read_text(encoding="utf-8")
    stdlib = set(getattr(sys, "stdlib_module_names", ())) | {"__future__"}
    if not stdlib:
        pytest.skip("needs Python 3.10+ for sys.stdlib_module_names")
    for line in source.splitlines():
        if line.startswith(("import ", "from ")):
            module = line.split()[1].split(".")[0]
            assert module in stdlib, line
