"""What can go wrong talking to ClickHouse, as callers need to tell it apart."""

from __future__ import annotations


class StoreError(RuntimeError):
    """ClickHouse refused or could not be reached; the caller may retry the same write."""


class StoreLockedError(StoreError):
    """Another process owns the embedded chDB directory."""


class Superseded(StoreError):
    """The offsets of a flush are already stored (by a member that took the partition over, or by
    an earlier attempt whose acknowledgement was lost): nothing was added; resume after them."""
