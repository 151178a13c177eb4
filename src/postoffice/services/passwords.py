"""argon2id password hashes: made and checked with libsodium where it can, argon2-cffi otherwise.

Both write and read the same PHC strings (``$argon2id$v=19$m=...,t=...,p=1$salt$hash``), so a
hash made by either is checked by either. libsodium (through PyNaCl, already a dependency) has
vectorised argon2 code and is the faster of the two on x86-64: on the 2-core test machine
1,000 verifications at m=19456/t=2 in two threads took 8.7 s against argon2-cffi's 10.4 s, and
4.7 s against 7.5 s at m=7168/t=5 (docs/operations.md, "Password hashing and login storms").
That is the whole reason for it: a restart's login storm is one verification per user.

libsodium only hashes with one lane and only does argon2id, so hashes with other parameters
(``p`` > 1, argon2i, argon2d, an unusual salt) are checked by argon2-cffi. Both libraries
release the GIL (cffi's default), so verifications run in parallel on the hashing threads
(``postoffice.cpu.hashing``).
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

try:
    import nacl.exceptions
    import nacl.pwhash.argon2id as sodium
except ImportError:  # pragma: no cover - PyNaCl is a dependency; argon2-cffi alone still works
    sodium = None

__all__ = ["Argon2"]

#: What libsodium checks: argon2id, version 19, one lane (the parameters are read from it).
_SODIUM_FORM = re.compile(rb"\$argon2id\$v=19\$m=\d+,t=\d+,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+\Z")


class Argon2:
    """argon2id with ``memory_kib`` KiB, ``time_cost`` passes and one lane."""

    def __init__(self, memory_kib: int, time_cost: int) -> None:
        self.memory_kib = memory_kib
        self.time_cost = time_cost
        self._cffi = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=Type.ID)

    def hash(self, password: str) -> str:
        if sodium is not None:
            return sodium.str(password.encode(), opslimit=self.time_cost, memlimit=self.memory_kib * 1024).decode()
        return self._cffi.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """True when ``password`` matches; False for a wrong one or a hash that is not argon2."""
        encoded = password_hash.encode()
        if sodium is not None and _SODIUM_FORM.match(encoded):
            try:
                return bool(sodium.verify(encoded, password.encode()))
            except nacl.exceptions.InvalidkeyError:
                return False
            except (nacl.exceptions.CryptoError, ValueError, TypeError):
                pass  # something libsodium will not take: argon2-cffi decides
        try:
            return self._cffi.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than these (or is not argon2id)."""
        try:
            return self._cffi.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            return False
