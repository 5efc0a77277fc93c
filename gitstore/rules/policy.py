"""The secrets policy: what a write does with each kind of finding of the scan
(:mod:`gitstore.rules.secrets`): ``block`` it, ``redact`` it or ``allow`` it.

Reading and checking a policy (every store open that writes) loads neither the scan
nor its libraries: only :attr:`Policy.region` other than the default asks
phonenumbers which regions exist.

Invariant: a :class:`Policy` is checked whole when it is made (an unknown kind, an
unknown action or an unknown region is a :class:`UsageError`) and immutable after.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast

from gitstore.core import lazy
from gitstore.errors import UsageError
from gitstore.rules.kinds import CREDENTIAL_KINDS, PII_KINDS

if TYPE_CHECKING:
    import phonenumbers
else:  # asked only for a region other than the default (gitstore.core.lazy)
    phonenumbers = lazy.module("phonenumbers")

__all__ = ["ACTIONS", "CREDENTIAL", "DEFAULT_POLICY", "DEFAULT_REGION", "PII", "Action",
           "Policy", "Rule", "category_of"]

Action = Literal["block", "redact", "allow"]
Rule = Action | Mapping[str, Action]
ACTIONS: tuple[str, ...] = ("block", "redact", "allow")
CREDENTIAL, PII = "credential", "pii"

DEFAULT_REGION = "US"  # of phone numbers written without "+", unless a policy says otherwise
_DEFAULTS: dict[str, Action] = {"card_number": "redact", "email": "allow", "phone": "allow"}


def category_of(kind: str) -> str:
    return PII if kind in PII_KINDS else CREDENTIAL


def _check_rule(category: str, rule: Any) -> None:
    kinds = CREDENTIAL_KINDS if category == CREDENTIAL else PII_KINDS
    if not isinstance(rule, str | Mapping):
        raise UsageError(f"secrets.{category} must be an action or an object of actions")
    for kind, action in rule.items() if isinstance(rule, Mapping) else [("", rule)]:
        where = f"secrets.{category}" + (f".{kind}" if kind else "")
        if kind and kind != "*" and kind not in kinds:
            raise UsageError(f"{where}: unknown {category} kind; known: {', '.join(sorted(kinds))}")
        if action not in ACTIONS:
            raise UsageError(f"{where} must be one of {', '.join(ACTIONS)}, not {action!r}")


@dataclass(frozen=True)
class Policy:
    """Per finding: ``block`` the write, ``redact`` the span, or ``allow`` it.

    ``credential`` and ``pii`` are each an action or ``{kind: action}`` (``"*"``: the
    rest of the category); kinds not mentioned keep their default. Default: block
    credentials, redact card numbers, allow emails and phone numbers. ``region``: the
    region of phone numbers written without ``+``. Stored as the ``secrets`` config key.
    """

    credential: Rule = "block"
    pii: Rule = field(default_factory=lambda: dict(_DEFAULTS))
    region: str = DEFAULT_REGION

    def __post_init__(self) -> None:
        for category in (CREDENTIAL, PII):
            rule = getattr(self, category)
            _check_rule(category, rule)
            if isinstance(rule, Mapping):     # frozen all the way down
                object.__setattr__(self, category, MappingProxyType(dict(rule)))
        region = self.region  # DEFAULT_REGION is valid (a test checks): no phonenumbers then
        if not isinstance(region, str) or (
                region != DEFAULT_REGION and region not in phonenumbers.SUPPORTED_REGIONS):
            raise UsageError(f"secrets.region: {self.region!r} is not a region code like 'US'")

    @property
    def phone_region(self) -> str | None:
        """The region phone numbers are looked for as written in; None when the policy
        allows every phone number (the default). Then a phone number would change
        nothing, so none is looked for and phonenumbers is not loaded; the one
        difference is stricter: an allowed phone number's span no longer hides
        another finding within it (a card number)."""
        return None if self.action("phone") == "allow" else self.region

    def action(self, kind: str) -> Action:
        rule = self.credential if category_of(kind) == CREDENTIAL else self.pii
        if isinstance(rule, str):
            return rule
        return rule.get(kind, rule.get("*", _DEFAULTS.get(kind, "block")))

    def to_json(self) -> dict[str, Any]:
        rules = {"credential": self.credential, "pii": self.pii}
        return {**{k: v if isinstance(v, str) else dict(sorted(v.items()))
                   for k, v in rules.items()}, "region": self.region}

    @classmethod
    def from_json(cls, data: Any) -> Policy:
        if not isinstance(data, Mapping):
            raise UsageError("secrets policy must be a JSON object")
        unknown = sorted(set(data) - {"credential", "pii", "region"})
        if unknown:
            raise UsageError(f"secrets policy: unknown setting {unknown[0]!r}")
        rules = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
        return cls(**cast(dict[str, Any], rules))


DEFAULT_POLICY = Policy()
