"""Representation of group attributes: each value's share of a batch against a minimum share."""

from __future__ import annotations

from dataclasses import dataclass

MISSING = "(missing)"  # the value counted for images without the attribute


@dataclass
class GroupShares:
    attribute: str
    counts: dict[str, int]  # value -> images
    shares: dict[str, float]  # value -> share of the batch (0..1)
    min_share: float
    under: list[str]  # values (seen or expected) whose share is below min_share
    flagged: bool


def group_shares(attribute: str, values: list, min_share: float, expected: tuple[str, ...] = ()) -> GroupShares:
    """Shares of each value of `attribute` in `values`; expected values that never occur count as 0."""
    counts: dict[str, int] = {v: 0 for v in expected}
    for v in values:
        key = MISSING if v is None else str(v)
        counts[key] = counts.get(key, 0) + 1
    n = max(len(values), 1)
    shares = {k: c / n for k, c in sorted(counts.items())}
    under = sorted(k for k, s in shares.items() if s < min_share and k != MISSING)
    return GroupShares(attribute, dict(sorted(counts.items())), shares, min_share, under, bool(under))
