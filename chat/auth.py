"""Password hashing and login throttling.

Passwords are stored only as salted scrypt hashes whose parameters travel with
them (``scrypt$n$r$p$salt$hash``), so the defaults can be raised later and old
hashes upgraded at the next successful login. Unknown users are checked
against a dummy hash of the same cost, so a reply never tells by its timing
whether an account exists.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

#: log2 of scrypt's n in production. Tests and the benchmark may lower it
#: (``--hash-cost``) so that thousands of sign-ups take seconds, not minutes.
DEFAULT_HASH_COST = 14
SCRYPT_R = 8
SCRYPT_P = 5
SALT_BYTES = 16
KEY_BYTES = 32


@dataclass(frozen=True)
class HashParams:
    n: int = 2 ** DEFAULT_HASH_COST
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    @classmethod
    def from_cost(cls, log2_n: int) -> "HashParams":
        if not 1 <= log2_n <= 20:
            raise ValueError("hash cost must be from 1 to 20 (log2 of scrypt's n)")
        return cls(n=2 ** log2_n)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, params: HashParams) -> bytes:
    maxmem = 128 * params.r * (params.n + params.p + 2) + 1024 * 1024
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt,
                          n=params.n, r=params.r, p=params.p, maxmem=maxmem, dklen=KEY_BYTES)


def hash_password(password: str, params: HashParams) -> str:
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(password, salt, params)
    return f"scrypt${params.n}${params.r}${params.p}${_b64(salt)}${_b64(digest)}"


def _parse(stored: str) -> Tuple[HashParams, bytes, bytes]:
    scheme, n, r, p, salt, digest = stored.split("$")
    if scheme != "scrypt":
        raise ValueError(f"unknown hash scheme {scheme!r}")
    return HashParams(int(n), int(r), int(p)), base64.b64decode(salt), base64.b64decode(digest)


def verify_password(password: str, stored: str) -> bool:
    params, salt, digest = _parse(stored)
    return hmac.compare_digest(_scrypt(password, salt, params), digest)


def needs_rehash(stored: str, params: HashParams) -> bool:
    """True when the stored hash is cheaper than the current defaults."""
    old, _, _ = _parse(stored)
    return (old.n, old.r, old.p) < (params.n, params.r, params.p)


class Hasher:
    """Hashes and verifies with a cap on concurrent computations.

    Each scrypt call takes ~16 MiB and a core for a good fraction of a second
    at the default cost; the semaphore keeps a storm of logins from exhausting
    memory or starving the threads that carry messages.
    """

    def __init__(self, params: HashParams, max_concurrent: Optional[int] = None) -> None:
        self.params = params
        self._slots = threading.BoundedSemaphore(max_concurrent or os.cpu_count() or 2)
        self._dummy = hash_password("dummy password for unknown users", params)

    def hash(self, password: str) -> str:
        with self._slots:
            return hash_password(password, self.params)

    def verify(self, password: str, stored: Optional[str]) -> bool:
        """Check ``password``; with ``stored`` None, spend the same time and fail."""
        with self._slots:
            ok = verify_password(password, stored or self._dummy)
        return ok and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        return needs_rehash(stored, self.params)


@dataclass
class ThrottlePolicy:
    """Failed logins allowed before delays start, and how the delays grow.

    Per address the allowance is larger: on a shared box every user connects
    from 127.0.0.1, and one person's typos must not lock out the class.
    """

    free_failures_per_account: int = 5
    free_failures_per_address: int = 30
    base_delay: float = 1.0
    max_delay: float = 60.0
    forget_after: float = 15 * 60.0


class _Record:
    __slots__ = ("failures", "blocked_until", "last")

    def __init__(self) -> None:
        self.failures = 0
        self.blocked_until = 0.0
        self.last = 0.0


class LoginThrottle:
    """Growing delays after repeated failures, per account and per address.

    Never a permanent lockout: the delay doubles per failure up to
    ``max_delay`` and the record is forgotten after ``forget_after`` seconds
    without failures, or at the account's next successful login.
    """

    def __init__(self, policy: Optional[ThrottlePolicy] = None, clock=time.monotonic) -> None:
        self.policy = policy or ThrottlePolicy()
        self._clock = clock
        self._lock = threading.Lock()
        self._records: Dict[Tuple[str, str], _Record] = {}

    def retry_after(self, account: str, address: str) -> float:
        """Seconds until a login may be tried; 0 when it may be tried now."""
        now = self._clock()
        with self._lock:
            waits = [rec.blocked_until - now for rec in self._lookup(account, address, now)]
        return max([0.0] + waits)

    def failed(self, account: str, address: str) -> None:
        now = self._clock()
        policy = self.policy
        with self._lock:
            for key, free in ((("acct", account), policy.free_failures_per_account),
                              (("addr", address), policy.free_failures_per_address)):
                rec = self._records.get(key)
                if rec is None or now - rec.last > policy.forget_after:
                    rec = self._records[key] = _Record()
                rec.failures += 1
                rec.last = now
                over = rec.failures - free
                if over > 0:
                    delay = min(policy.max_delay, policy.base_delay * 2 ** (over - 1))
                    rec.blocked_until = now + delay
            if len(self._records) > 100_000:
                self._prune(now)

    def succeeded(self, account: str) -> None:
        with self._lock:
            self._records.pop(("acct", account), None)

    def _lookup(self, account: str, address: str, now: float):
        for key in (("acct", account), ("addr", address)):
            rec = self._records.get(key)
            if rec is not None and now - rec.last <= self.policy.forget_after:
                yield rec

    def _prune(self, now: float) -> None:
        stale = [k for k, r in self._records.items() if now - r.last > self.policy.forget_after]
        for key in stale:
            del self._records[key]
