"""Password hashing and login throttling, without sockets."""
from __future__ import annotations

import pytest

from chat.auth import (
    Hasher,
    HashParams,
    KeyedBuckets,
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

    def fail() -> None:
        throttle.begin("bob", "1.2.3.4")
        throttle.finish("bob", "1.2.3.4", ok=False)

    fail()
    assert throttle.retry_after("bob") == 0
    fail()
    assert throttle.retry_after("bob") == 1.0   # the free ones are spent
    for expected in (2.0, 4.0, 4.0):              # 1, 2, 4: capped
        now[0] += 10
        fail()
        assert throttle.retry_after("bob") == expected
    now[0] += 10
    assert throttle.retry_after("bob") == 0       # never a permanent lockout
    now[0] += 200
    fail()
    assert throttle.retry_after("bob") == 0       # forgotten after a quiet spell


def test_the_address_record_slows_wrong_guesses_and_never_refuses():
    throttle = LoginThrottle(ThrottlePolicy(free_failures_per_account=100,
                                            free_failures_per_address=3,
                                            address_delay=1.0, max_address_delay=4.0),
                             clock=lambda: 0.0)
    holdbacks = []
    for user in ("a", "b", "c", "d", "e", "f", "g"):
        throttle.begin(user, "127.0.0.1")          # never raises: the address never refuses
        holdbacks.append(throttle.finish(user, "127.0.0.1", ok=False))
    assert holdbacks == [0, 0, 0, 1.0, 2.0, 4.0, 4.0]
    throttle.begin("h", "127.0.0.1")
    assert throttle.finish("h", "127.0.0.1", ok=True) == 0   # a right password: at once
    throttle.begin("i", "10.0.0.2")
    assert throttle.finish("i", "10.0.0.2", ok=False) == 0   # other addresses are apart


def test_keyed_buckets_limit_each_key_alone():
    now = [0.0]
    buckets = KeyedBuckets(rate=1.0, burst=2, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 1.0]
    assert buckets.take("b") == 0
    now[0] = 1.0
    assert buckets.take("a") == 0
    assert KeyedBuckets(rate=0, burst=0).take("x") == 0   # 0: no limit
