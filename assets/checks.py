"""Asset checks generated from a contract: one spec per contract check, blocking where the contract says."""

from __future__ import annotations

import dagster as dg

from data_contracts import Contract

DESCRIPTIONS = {
    "schema": "The manifest has every contract column with its Arrow type.",
    "row_count": "The batch has at least the contract's minimum number of accepted images.",
    "unique_ids": "Sample ids are sha256 hex digests, present and unique.",
    "image_constraints": "Sizes, file sizes, formats and modes are within the contract's limits.",
    "required_attributes": "Every image carries the contract's required attributes.",
    "group_values": "Group attributes exist and take only the contract's allowed values.",
    "labels": "Enough classes, and enough images per class.",
    "group_representation": "Each group value holds at least the contract's minimum share of the batch.",
    "attribute_drift": "Attribute distributions have not drifted from earlier batches (PSI and chi-square).",
    "image_drift": "Image statistics have not drifted from earlier batches (PSI and KS).",
    "near_duplicates": "Near-duplicate images (pHash) stay under the contract's share.",
    "leakage": "No eval image is in a training shard, by sha256 or by near-identical pHash.",
}


def check_specs(contract: Contract, asset: str, names: tuple[str, ...]) -> list[dg.AssetCheckSpec]:
    """Specs for the contract's checks among `names`. Not partitioned (that is a preview feature in Dagster
    1.13): each evaluation belongs to the run that made it, and the run carries the batch's partition key."""
    return [dg.AssetCheckSpec(name, asset=asset, blocking=contract.blocking(name),
                              description=f"{DESCRIPTIONS[name]} ({contract.checks[name]}, {contract.label})")
            for name in names if name in contract.checks]


def check_result(contract: Contract, name: str, passed: bool, summary: str, **metadata) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if contract.blocking(name) else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(check_name=name, passed=bool(passed), severity=severity, description=summary[:1000],
                               metadata={"summary": summary, "contract": contract.label, **metadata})
