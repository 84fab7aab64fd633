"""The feeds' exceptions: one root, transient vs permanent (docs/style.md §8)."""

from __future__ import annotations


class FeedError(Exception):
    """Root of the feeds' errors (permanent unless a subclass says otherwise)."""


class FeedConfigError(FeedError):
    """A setting or a registry attribute the feed cannot work with (fix it and restart)."""


class StoreUnavailable(FeedError):
    """Transient: the store cannot be read now (down, restarting, not migrated)."""


class ReceiverUnavailable(FeedError):
    """Transient: the receiver (the province's FTP server) cannot take a file now."""
