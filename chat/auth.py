"""Password hashing, login throttling, and the token buckets behind every rate limit.

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


class TokenBucket:
    """Allows ``rate`` events per second on average with bursts of ``burst``.

    A rate of 0 or less means no limit. Not thread-safe by itself: each owner
    takes it under its own lock, or from one thread.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp", "_clock")

    def __init__(self, rate: float, burst: float, clock=time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        """Spend a token if there is one: True when the event may happen now."""
        if self.rate <= 0:
            return True
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait(self) -> float:
        """Seconds until the next token (0 when one is there now)."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        return max(0.0, (1.0 - tokens) / self.rate)


class KeyedBuckets:
    """One token bucket per key (a user, an address), made on first use; thread-safe.

    Idle buckets that have refilled are forgotten once there are many, so the
    table cannot grow without bound under a stream of new keys.
    """

    def __init__(self, rate: float, burst: float, clock=time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._buckets: Dict[str, TokenBucket] = {}

    def take(self, key: str) -> float:
        """Spend one token of ``key``: 0 when allowed, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self._max_keys:
                    self._forget_full()
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self._clock)
            return 0.0 if bucket.take() else max(bucket.wait(), 0.001)

    def _forget_full(self) -> None:
        now = self._clock()
        full = [key for key, b in self._buckets.items()
                if b.tokens + (now - b.stamp) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]


@dataclass
class ThrottlePolicy:
    """How failed logins are slowed; SECURITY.md states the same numbers.

    Per account: ``free_failures_per_account`` attempts, then each further
    attempt waits ``base_delay`` doubling to ``max_delay``, whatever address
    it comes from. An attempt counts when it starts, and one account has at
    most one attempt being checked at a time, so a burst of simultaneous
    guesses gets no more checks than a sequence would.

    Per address: never a refusal (on a shared box everyone is 127.0.0.1, and
    one person's guesses must not keep the others out). Past
    ``free_failures_per_address`` failures a *wrong* password from that
    address is answered only after ``address_delay`` seconds (doubling to
    ``max_address_delay``), which slows spraying many accounts from one
    connection; a right password is answered at once.
    """

    free_failures_per_account: int = 5
    free_failures_per_address: int = 30
    base_delay: float = 1.0
    max_delay: float = 60.0
    address_delay: float = 1.0
    max_address_delay: float = 10.0
    forget_after: float = 15 * 60.0
    #: How long an attempt waits for another attempt on the same account to finish.
    in_flight_wait: float = 10.0


class Throttled(Exception):
    """A login that may not be checked now; ``wait`` is the seconds until it may."""

    def __init__(self, wait: float, reason: str) -> None:
        super().__init__(reason)
        self.wait = wait
        self.reason = reason


class _Record:
    __slots__ = ("failures", "blocked_until", "last", "in_flight")

    def __init__(self) -> None:
        self.failures = 0
        self.blocked_until = 0.0
        self.last = 0.0
        self.in_flight = False


def _delay(over: int, base: float, cap: float) -> float:
    """The wait after ``over`` failures past the free ones (over >= 1): base, 2 base, ..."""
    return min(cap, base * 2 ** min(over - 1, 30))


class LoginThrottle:
    """Growing delays after repeated failures, per account and per address.

    Use: ``begin(account, address)`` before checking the password (raises
    ``Throttled``), then ``finish(account, address, ok)`` with the result,
    always. Never a permanent lockout: the delay is capped, and a record is
    forgotten after ``forget_after`` seconds without failures, or at the
    account's next successful login.
    """

    def __init__(self, policy: Optional[ThrottlePolicy] = None, clock=time.monotonic) -> None:
        self.policy = policy or ThrottlePolicy()
        self._clock = clock
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._accounts: Dict[str, _Record] = {}
        self._addresses: Dict[str, _Record] = {}

    def begin(self, account: str, address: str) -> None:
        """Reserve an attempt on ``account``, counted as a failure until ``finish`` says
        otherwise. Waits while another attempt on the account is being checked."""
        policy = self.policy
        with self._lock:
            deadline = time.monotonic() + policy.in_flight_wait
            while True:
                rec = self._fresh(self._accounts, account, self._clock())
                if not rec.in_flight:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Throttled(1.0, "another login to this account is being checked")
                self._done.wait(left)
            now = self._clock()
            if now < rec.blocked_until:
                raise Throttled(rec.blocked_until - now, "too many failed logins")
            rec.in_flight = True
            rec.failures += 1
            rec.last = now
            over = rec.failures - policy.free_failures_per_account + 1
            if over > 0:  # the last free attempt already sets the first delay
                rec.blocked_until = now + _delay(over, policy.base_delay, policy.max_delay)
            if len(self._accounts) + len(self._addresses) > 100_000:
                self._prune(now)

    def finish(self, account: str, address: str, ok: bool) -> float:
        """End the attempt ``begin`` reserved; for a wrong password, the seconds its
        answer must be held back because its address is over its allowance."""
        policy = self.policy
        with self._lock:
            now = self._clock()
            rec = self._accounts.get(account)
            if rec is not None:
                rec.in_flight = False
                if ok:
                    del self._accounts[account]
            self._done.notify_all()
            if ok:
                return 0.0
            addr = self._fresh(self._addresses, address, now)
            addr.failures += 1
            addr.last = now
            over = addr.failures - policy.free_failures_per_address
            if over <= 0:
                return 0.0
            return _delay(over, policy.address_delay, policy.max_address_delay)

    def retry_after(self, account: str) -> float:
        """Seconds until a login to ``account`` may be tried; 0 when it may now."""
        now = self._clock()
        with self._lock:
            rec = self._accounts.get(account)
            if rec is None or now - rec.last > self.policy.forget_after:
                return 0.0
            return max(0.0, rec.blocked_until - now)

    def _fresh(self, table: Dict[str, _Record], key: str, now: float) -> _Record:
        rec = table.get(key)
        if rec is None or (not rec.in_flight and now - rec.last > self.policy.forget_after):
            rec = table[key] = _Record()
        return rec

    def _prune(self, now: float) -> None:
        for table in (self._accounts, self._addresses):
            stale = [k for k, r in table.items()
                     if not r.in_flight and now - r.last > self.policy.forget_after]
            for key in stale:
                del table[key]
