"""The terminal around curses: bracketed paste on while the client runs, off on every exit.

Two things must hold however the client ends (``/quit``, Ctrl-C, a crash,
SIGTERM, SIGHUP): the terminal is told to stop bracketing pastes, or the shell
afterwards would see ``ESC[200~`` around every paste; and keys the client did
not read are dropped, not left for the shell to run. Focus reports
(``ESC[?1004h``, for the bell) are turned off the same way as bracketed paste,
or the shell would see ``ESC[I`` at every window switch. ``guarded`` does both in
a ``finally``, with an ``atexit`` hook behind it and handlers that turn the
usual kill signals into an ordinary exit so the ``finally`` runs. Ctrl-Z hands
the shell its terminal the same way (``suspendable``) until ``fg``.
"""
from __future__ import annotations

import atexit
import os
import signal
import sys
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Optional

try:
    import termios
except ImportError:  # pragma: no cover - Windows
    termios = None  # type: ignore[assignment]

PASTE_ON = b"\x1b[?2004h"
PASTE_OFF = b"\x1b[?2004l"
#: Focus reports on/off: the terminal then sends ESC[I and ESC[O (``bell.FocusFilter``).
FOCUS_ON = b"\x1b[?1004h"
FOCUS_OFF = b"\x1b[?1004l"
EXIT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


class TerminalGuard:
    """Bracketed paste on and off, and pending input dropped, on one terminal."""

    def __init__(self, out_fd: int, in_fd: int) -> None:
        self.out_fd = out_fd
        self.in_fd = in_fd
        self.paste_on = False
        self.focus_on = False

    def enable_paste(self) -> None:
        """Ask the terminal to bracket pastes (only a terminal: never into a pipe)."""
        if _isatty(self.out_fd) and _write(self.out_fd, PASTE_ON):
            self.paste_on = True

    def disable_paste(self) -> None:
        if self.paste_on:
            _write(self.out_fd, PASTE_OFF)
            self.paste_on = False

    def enable_focus(self) -> None:
        """Ask the terminal to report focus in and out (only a terminal, as for pastes)."""
        if _isatty(self.out_fd) and _write(self.out_fd, FOCUS_ON):
            self.focus_on = True

    def disable_focus(self) -> None:
        if self.focus_on:
            _write(self.out_fd, FOCUS_OFF)
            self.focus_on = False

    def drain_input(self) -> None:
        """Drop keys typed or pasted but not read: they were meant for the client."""
        if termios is None or not _isatty(self.in_fd):
            return
        try:
            termios.tcflush(self.in_fd, termios.TCIFLUSH)
        except (termios.error, OSError):
            pass

    def restore(self) -> None:
        """Idempotent: safe from ``finally``, ``atexit`` and a signal handler alike."""
        self.disable_paste()
        self.disable_focus()
        self.drain_input()


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _write(fd: int, data: bytes) -> bool:
    try:
        os.write(fd, data)
        return True
    except OSError:
        return False  # the terminal is gone (SIGHUP): nothing left to restore


def _exit_on_signal(signum: int, _frame) -> None:
    """SIGTERM and SIGHUP end the client the way an exception would: through ``finally``."""
    raise SystemExit(128 + signum)


@contextmanager
def guarded(out_fd: Optional[int] = None, in_fd: Optional[int] = None) -> Iterator[TerminalGuard]:
    """A ``TerminalGuard`` restored on leaving, however the block is left."""
    guard = TerminalGuard(sys.stdout.fileno() if out_fd is None else out_fd,
                          sys.stdin.fileno() if in_fd is None else in_fd)
    previous: Dict[int, object] = {}
    for signum in EXIT_SIGNALS:
        try:
            previous[signum] = signal.signal(signum, _exit_on_signal)
        except (ValueError, OSError):  # not the main thread: leave signals alone
            pass
    atexit.register(guard.restore)
    try:
        yield guard
    finally:
        guard.restore()
        atexit.unregister(guard.restore)
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # type: ignore


@contextmanager
def suspendable(guard: TerminalGuard, leave: Callable[[], None],
                back: Callable[[], None]) -> Iterator[None]:
    """Ctrl-Z stops the client with the terminal as the shell expects it, and ``fg`` resumes.

    curses would leave and retake the screen by itself, but not bracketed paste:
    the shell would get ``ESC[200~`` around its pastes. ``leave`` and ``back``
    are curses' part (``endwin``, a refresh).
    """
    if not hasattr(signal, "SIGTSTP"):
        yield
        return

    def on_stop(_signum: int, _frame) -> None:
        focus = guard.focus_on
        guard.disable_paste()
        guard.disable_focus()
        leave()
        os.kill(os.getpid(), signal.SIGSTOP)   # stopped here until the shell's fg (SIGCONT)
        guard.enable_paste()
        if focus:
            guard.enable_focus()
        back()

    try:
        previous = signal.signal(signal.SIGTSTP, on_stop)
    except (ValueError, OSError):  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTSTP, signal.SIG_DFL if previous is None else previous)
