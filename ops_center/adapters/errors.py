"""The ops persistence errors, one root (docs/style.md, errors): every port raises these,
whatever the database underneath."""

from __future__ import annotations


class RepositoryError(Exception):
    """Root of the ops persistence errors (permanent unless a subclass says otherwise)."""


class RepositoryUnavailable(RepositoryError):
    """Transient: the database cannot be reached, is restarting, or is not migrated yet."""


class Conflict(RepositoryError):
    """A uniqueness or integrity constraint refused the write."""


class UserExists(Conflict):
    pass


class UnknownUser(RepositoryError):
    pass
