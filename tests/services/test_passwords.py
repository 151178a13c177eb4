"""argon2id hashes through libsodium and argon2-cffi (services/passwords.py): either library's
hash is checked by the other, wrong passwords and junk fail, odd parameters fall back."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type

from postoffice.services import passwords
from postoffice.services.passwords import Argon2

CHEAP = {"memory_kib": 1024, "time_cost": 1}


def cffi(**kw: object) -> PasswordHasher:
    params = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1, "type": Type.ID, **kw}
    return PasswordHasher(**params)  # type: ignore[arg-type]


def test_libsodium_is_used() -> None:
    # PyNaCl is a dependency: without it every login pays argon2-cffi's slower code.
    assert passwords.sodium is not None


def test_hash_is_a_standard_argon2id_string_that_argon2_cffi_accepts() -> None:
    hashed = Argon2(**CHEAP).hash("correct horse")
    assert hashed.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert cffi().verify(hashed, "correct horse")
    assert not Argon2(**CHEAP).needs_rehash(hashed)


def test_argon2_cffi_hashes_verify() -> None:
    hasher = Argon2(**CHEAP)
    hashed = cffi().hash("pässwörd")
    assert hasher.verify(hashed, "pässwörd")
    assert not hasher.verify(hashed, "passwörd")
    assert not hasher.verify(hashed, "")


def test_wrong_password_and_junk_are_false_not_errors() -> None:
    hasher = Argon2(**CHEAP)
    hashed = hasher.hash("secret one")
    assert not hasher.verify(hashed, "secret two")
    for junk in ("", "plain text", "$argon2id$v=19$m=1024,t=1,p=1$garbage", "$2b$12$abcdefghijklmnopqrstuu"):
        assert not hasher.verify(junk, "secret one")


@pytest.mark.parametrize("other", [
    cffi(parallelism=4),  # several lanes: libsodium does not hash those
    cffi(type=Type.I),
    cffi(salt_len=8, hash_len=16),
])
def test_other_parameters_still_verify(other: PasswordHasher) -> None:
    hasher = Argon2(**CHEAP)
    hashed = other.hash("legacy")
    assert hasher.verify(hashed, "legacy")
    assert not hasher.verify(hashed, "Legacy")


def test_needs_rehash_after_a_parameter_change() -> None:
    old = Argon2(memory_kib=2048, time_cost=1).hash("pw-1234567")
    assert Argon2(**CHEAP).needs_rehash(old)
    assert not Argon2(memory_kib=2048, time_cost=1).needs_rehash(old)
    assert not Argon2(**CHEAP).needs_rehash("not a hash")
