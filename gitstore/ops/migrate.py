"""Moving customer repositories to the current layout (:mod:`gitstore.core.layout`).

A repository's layout is its ``gitstore.layout`` setting. Repositories created
before layouts have none and keep writing conversations whole. Migrating one
sets the setting to :data:`~gitstore.core.layout.LATEST` under the customer's
writer lock; from then on every commit stores the conversation in parts. History
is never rewritten: earlier commits, tags and signatures stay as they are, and
every reader understands both layouts, commit by commit. Invariants:

* migrating is idempotent, and changes nothing a reader sees (the documents of
  every version are byte for byte the same before and after);
* a repository is named in the result with the layout it had, so a second run
  reports it as already migrated;
* an audit record notes each repository migrated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitstore.core import layout
from gitstore.errors import NotFoundError
from gitstore.store.context import CustomerContext, StoreContext

__all__ = ["Migrated", "migrate"]


@dataclass(frozen=True)
class Migrated:
    customer: str
    before: int
    after: int

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def to_json(self) -> dict[str, Any]:
        return {"customer": self.customer, "layout_before": self.before,
                "layout": self.after, "changed": self.changed}


def migrate(store: StoreContext, names: list[str] | None = None) -> list[Migrated]:
    """Set every named customer's repository (default: all) to the latest layout."""
    customers = [store.customer(n) for n in names] if names else \
        [store.customer_named(n) for n in store.customers()]
    for customer in customers:
        if not customer.exists:
            raise NotFoundError(f"unknown customer {customer.name!r} in {store.root}")
    return [_migrate_one(c) for c in customers]


def _migrate_one(customer: CustomerContext) -> Migrated:
    with customer.locked():
        before = customer.repo.layout_setting()
        if before != layout.LATEST:
            customer.repo.set_layout(layout.LATEST)
            customer.audit("migrate", detail=f"layout {before} -> {layout.LATEST}")
    return Migrated(customer.name, before, layout.LATEST)
