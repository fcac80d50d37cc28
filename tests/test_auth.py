"""Password hashing and login throttling, without sockets."""
from __future__ import annotations

import pytest

from chat.auth import (
    Hasher,
    HashParams,
    LoginThrottle,
    ThrottlePolicy,
    hash_password,
    needs_rehash,
    verify_password,
)

LOW = HashParams.from_cost(4)


def test_hash_is_salted_and_verifies():
    a, b = hash_password("correct horse", LOW), hash_password("correct horse", LOW)
    assert a != b and a.startswith("scrypt$16$8$5$")
    assert "correct horse" not in a
    assert verify_password("correct horse", a)
    assert not verify_password("correct horsf", a)


def test_rehash_when_defaults_rise():
    old = hash_password("pw-123456", LOW)
    assert needs_rehash(old, HashParams.from_cost(5))
    assert not needs_rehash(old, LOW)


def test_unknown_user_verifies_against_a_dummy():
    hasher = Hasher(LOW)
    assert hasher.verify("anything", None) is False
    assert hasher.verify("pw-123456", hasher.hash("pw-123456")) is True


def test_cost_bounds():
    with pytest.raises(ValueError):
        HashParams.from_cost(0)
    assert HashParams.from_cost(14).n == 16384


def test_throttle_grows_and_forgets():
    now = [0.0]
    throttle = LoginThrottle(ThrottlePolicy(free_failures_per_account=2, base_delay=1.0,
                                            max_delay=4.0, forget_after=100.0),
                             clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("bob", "1.2.3.4")
    assert throttle.retry_after("bob", "1.2.3.4") == 0
    throttle.failed("bob", "1.2.3.4")
    assert throttle.retry_after("bob", "9.9.9.9") == 1.0  # per account, from any address
    throttle.failed("bob", "1.2.3.4")
    throttle.failed("bob", "1.2.3.4")
    assert throttle.retry_after("bob", "1.2.3.4") == 4.0  # 1, 2, 4: capped
    throttle.failed("bob", "1.2.3.4")
    assert throttle.retry_after("bob", "1.2.3.4") == 4.0
    now[0] = 10.0
    assert throttle.retry_after("bob", "1.2.3.4") == 0  # never a permanent lockout
    now[0] = 200.0
    throttle.failed("bob", "1.2.3.4")
    assert throttle.retry_after("bob", "1.2.3.4") == 0  # forgotten after a quiet spell
    throttle.succeeded("bob")


def test_throttle_per_address_allows_a_shared_box():
    throttle = LoginThrottle(ThrottlePolicy(free_failures_per_account=100,
                                            free_failures_per_address=3), clock=lambda: 0.0)
    for user in ("a", "b", "c"):
        throttle.failed(user, "127.0.0.1")
    assert throttle.retry_after("d", "127.0.0.1") == 0
    throttle.failed("d", "127.0.0.1")
    assert throttle.retry_after("e", "127.0.0.1") > 0
    assert throttle.retry_after("e", "10.0.0.2") == 0
