"""What the catalog needs of a store: structural types, so the catalog stays below the store.

Invariant: the catalog reads a store only through these protocols (the store layer's
``Store`` and ``Customer`` satisfy them structurally; nothing here imports them). Every
member is read-only from the catalog's side.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Protocol

__all__ = ["ConfigView", "CustomerView", "StoreView"]


class ConfigView(Protocol):
    """The store configuration the catalog reads."""

    @property
    def active_timeout(self) -> str | int | float | None:
        """A duration (text in the duration grammar, or a number of seconds), or None."""
        ...


class CustomerView(Protocol):
    """One customer as the catalog sees it."""

    @property
    def name(self) -> str:
        """The repository's name under the store root (the hash in a hashed-names store)."""
        ...

    @property
    def exists(self) -> bool:
        """Whether the customer's repository exists."""
        ...

    def audit(self, op: str, *, rev: str | None = None, commit: str | None = None,
              document: str | None = None, detail: str | None = None) -> None:
        """Append to the customer's access log."""
        ...


class StoreView(Protocol):
    """A store as the catalog sees it: a root of customer repositories, a config, a clock."""

    @property
    def root(self) -> Path: ...

    @property
    def config(self) -> ConfigView: ...

    def customers(self) -> list[str]:
        """Names of all customers that have a repository, sorted."""
        ...

    def customer(self, name: str) -> CustomerView:
        """The customer a caller names (its api_key; raises a GitStoreError for an
        invalid name)."""
        ...

    def customer_named(self, name: str) -> CustomerView:
        """The customer whose repository is ``name``, as :meth:`customers` lists it
        and the catalog records it (the hash in a store with hashed names)."""
        ...

    def now(self) -> datetime:
        """The store's clock (aware)."""
        ...

    def record_answer(self, op: str, customers: Collection[str], detail: str) -> None:
        """Record one answer that showed the data of ``customers`` (repository names)
        in the store's access trail: one record, however many customers it names."""
        ...
