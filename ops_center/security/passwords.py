"""Password hashing with Argon2id (argon2-cffi defaults, RFC 9106 low-memory profile)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_CHARS = 10


class PasswordPolicyError(ValueError):
    pass


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        # Verified against when the user does not exist, so that an unknown name costs the
        # same time as a wrong password (no user enumeration by timing).
        self._dummy = self._hasher.hash("smartward-dummy-password")

    def hash(self, password: str) -> str:
        check_policy(password)
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._dummy, password) and password_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


def check_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise PasswordPolicyError(
            f"mật khẩu quá ngắn / password too short: at least {MIN_PASSWORD_CHARS} characters"
        )
    if password.strip() != password or not password.strip():
        raise PasswordPolicyError(
            "mật khẩu có khoảng trắng đầu/cuối / password has leading or trailing spaces"
        )
