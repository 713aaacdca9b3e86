"""Compile a contract to a Great Expectations 1.x suite, run it on a manifest, and build data docs.

    outcome = validate_manifest(contract, table, docs_dir=Path("reports/b1/data_docs"), run_name="b1",
                                escape=ssl_ops.escape.html_text)
    outcome.checks["image_constraints"].passed

GE's data docs put values into HTML as given, so values from the data (attributes, paths, the batch name) are
untrusted there. `escape` (injected: this package imports no project code) must be injective and leave
identifiers and hex digests as they are; GE then sees an escaped view of every string column, of the contract's
value sets and of the run name, which gives the same check outcomes, and the outcomes' examples are mapped back
to the original values.

Each expectation carries `meta.check`, the contract check it belongs to; a check passes when all of
its expectations pass. Column types are compared on the Arrow schema (exact), not on pandas dtypes.
GE is imported on first use: it takes seconds, and loading the Dagster definitions should not.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from data_contracts.contract import Contract

ATTR_PREFIX = "attr_"  # the manifest's column prefix for sidecar attributes
_ARROW = {"string": (pa.string(), pa.large_string()), "int32": (pa.int32(),), "int64": (pa.int64(),),
          "uint64": (pa.uint64(),), "float": (pa.float32(),), "double": (pa.float64(),), "bool": (pa.bool_(),)}


@dataclass
class ExpectationOutcome:
    expectation: str  # GE expectation type, or "arrow_type" / "min_per_class" for native checks
    column: str | None
    success: bool
    observed: object = None  # observed value, for aggregate expectations
    unexpected_count: int | None = None
    examples: list = field(default_factory=list)  # a few unexpected values


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    blocking: bool
    expectations: list[ExpectationOutcome]

    def summary(self) -> str:
        bad = [e for e in self.expectations if not e.success]
        if not bad:
            return f"{self.name}: {len(self.expectations)} expectation(s) passed"
        parts = []
        for e in bad[:5]:
            what = f"{e.expectation}({e.column})" if e.column else e.expectation
            got = f"{e.unexpected_count} unexpected, e.g. {e.examples[:3]}" if e.unexpected_count else f"observed {e.observed}"
            parts.append(f"{what}: {got}")
        return f"{self.name}: {len(bad)} of {len(self.expectations)} failed: " + "; ".join(parts)


@dataclass
class ValidationOutcome:
    success: bool
    checks: dict[str, CheckOutcome]
    docs_index: Path | None  # data docs index.html
    statistics: dict


def build_suite(contract: Contract, columns: list[str], escape: Callable[[str], str] = str):
    """The GE ExpectationSuite for `contract`; `columns` are the manifest's columns (for group rules);
    `escape` is applied to the value sets, to match an escaped view of the data (see validate_manifest)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"{contract.name}-{contract.version}")

    def add(check: str, exp):
        if check in contract.checks:
            exp.meta = {"check": check}
            suite.add_expectation(exp)

    for col in contract.manifest:
        add("schema", gxe.ExpectColumnToExist(column=col))
    add("row_count", gxe.ExpectTableRowCountToBeBetween(min_value=contract.min_images))
    add("unique_ids", gxe.ExpectColumnValuesToNotBeNull(column="sample_id"))
    add("unique_ids", gxe.ExpectColumnValuesToBeUnique(column="sample_id"))
    add("unique_ids", gxe.ExpectColumnValuesToMatchRegex(column="sample_id", regex=r"^[0-9a-f]{64}$"))
    im = contract.images
    for col in ("width", "height"):
        add("image_constraints", gxe.ExpectColumnValuesToBeBetween(column=col, min_value=im.min_side,
                                                                   max_value=im.max_side))
    add("image_constraints", gxe.ExpectColumnValuesToBeBetween(column="bytes", min_value=1, max_value=im.max_bytes))
    for col, allowed in (("format", im.formats), ("mode", im.modes)):
        add("image_constraints", gxe.ExpectColumnValuesToBeInSet(column=col, value_set=[escape(v) for v in allowed]))
    for a in contract.required_attributes:
        add("required_attributes", gxe.ExpectColumnToExist(column=ATTR_PREFIX + a))
        if ATTR_PREFIX + a in columns:
            add("required_attributes", gxe.ExpectColumnValuesToNotBeNull(column=ATTR_PREFIX + a))
    for g, rule in contract.groups.items():
        add("group_values", gxe.ExpectColumnToExist(column=ATTR_PREFIX + g))
        if rule.values and ATTR_PREFIX + g in columns:
            add("group_values", gxe.ExpectColumnValuesToBeInSet(column=ATTR_PREFIX + g,
                                                                value_set=[escape(v) for v in rule.values]))
    if contract.labels is not None and ATTR_PREFIX + "label" in columns:
        add("labels", gxe.ExpectColumnUniqueValueCountToBeBetween(column=ATTR_PREFIX + "label",
                                                                  min_value=contract.labels.min_classes))
    return suite


def _native_checks(contract: Contract, table: pa.Table) -> dict[str, list[ExpectationOutcome]]:
    out: dict[str, list[ExpectationOutcome]] = {}
    if "schema" in contract.checks:
        for col, typ in contract.manifest.items():
            if col in table.column_names:
                got = table.schema.field(col).type
                out.setdefault("schema", []).append(
                    ExpectationOutcome("arrow_type", col, got in _ARROW[typ], observed=str(got)))
    if contract.labels is not None and "labels" in contract.checks and ATTR_PREFIX + "label" in table.column_names:
        counts: dict = {}
        for v in table.column(ATTR_PREFIX + "label").to_pylist():
            if v is not None:
                counts[v] = counts.get(v, 0) + 1
        small = sorted(k for k, n in counts.items() if n < contract.labels.min_per_class)
        out.setdefault("labels", []).append(ExpectationOutcome(
            "min_per_class", ATTR_PREFIX + "label", not small, observed=dict(sorted(counts.items())),
            unexpected_count=len(small), examples=small[:10]))
    return out


def _context(docs_dir: Path | None):
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    for site in list(ctx.list_data_docs_sites()):
        ctx.delete_data_docs_site(site)
    if docs_dir is not None:
        ctx.add_data_docs_site(site_name="sslpipe", site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    return ctx


def escaped_view(table: pa.Table, escape: Callable[[str], str]) -> tuple[pa.Table, dict[str, dict[str, str]]]:
    """`table` with `escape` applied to every string value, and per column the map escaped -> original.
    Raises ValueError if `escape` maps two values of a column to one (it must be injective)."""
    originals: dict[str, dict[str, str]] = {}
    for i, f in enumerate(table.schema):
        if f.type not in (pa.string(), pa.large_string()):
            continue
        back: dict[str, str] = {}
        values = []
        for v in table.column(i).to_pylist():
            e = None if v is None else escape(v)
            if e is not None and back.setdefault(e, v) != v:
                raise ValueError(f"escape is not injective: {back[e]!r} and {v!r} both give {e!r}")
            values.append(e)
        originals[f.name] = back
        table = table.set_column(i, f, pa.array(values, f.type))
    return table, originals


def validate_manifest(contract: Contract, table: pa.Table, docs_dir: Path | None = None,
                      run_name: str = "manifest", escape: Callable[[str], str] = html.escape) -> ValidationOutcome:
    """Run the contract's suite on a manifest (Arrow table); write data docs under docs_dir if given.
    `escape`: HTML escaping for everything from the data that the docs show (the assets pass the project's
    one rule, ssl_ops.escape.html_text); it must be injective and keep identifiers and hex digests unchanged."""
    import great_expectations as gx

    ctx = _context(docs_dir)
    shown, originals = escaped_view(table, escape)
    df = shown.to_pandas()
    # GE's store keys may hold neither '/' nor '\\' (a folder name can hold '\\', and the escaped form of a
    # control character does): percent-encode both, after the display escaping
    run_name = escape(run_name).replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")
    source = ctx.data_sources.add_pandas(f"{contract.name}_manifest")
    batch_def = source.add_dataframe_asset(run_name).add_batch_definition_whole_dataframe("whole")
    suite = ctx.suites.add(build_suite(contract, table.column_names, escape))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(data=batch_def, suite=suite, name=run_name))
    actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if docs_dir is not None else []
    cp = ctx.checkpoints.add(gx.Checkpoint(name=f"{run_name}_checkpoint", validation_definitions=[vd],
                                           actions=actions, result_format={"result_format": "SUMMARY"}))
    result = cp.run(batch_parameters={"dataframe": df})

    grouped: dict[str, list[ExpectationOutcome]] = {}
    stats: dict = {}
    for vr in result.run_results.values():
        stats = dict(vr.statistics)
        for r in vr.results:
            cfg = r.expectation_config
            res = r.result or {}
            back = originals.get(cfg.kwargs.get("column"), {})
            grouped.setdefault((cfg.meta or {}).get("check", "other"), []).append(ExpectationOutcome(
                cfg.type, cfg.kwargs.get("column"), bool(r.success), observed=res.get("observed_value"),
                unexpected_count=res.get("unexpected_count"),
                examples=[_plain(back.get(v, v) if isinstance(v, str) else v)
                          for v in (res.get("partial_unexpected_list") or [])[:5]]))
    for check, outs in _native_checks(contract, table).items():
        grouped.setdefault(check, []).extend(outs)
    checks = {}
    for name in contract.checks:
        if name in grouped:
            outs = grouped[name]
            checks[name] = CheckOutcome(name, all(o.success for o in outs), contract.blocking(name), outs)
    index = Path(docs_dir) / "index.html" if docs_dir is not None else None
    return ValidationOutcome(all(c.passed for c in checks.values()), checks, index, stats)


def _plain(v):
    if v is None or isinstance(v, (str, int, bool)):
        return v
    if isinstance(v, float):
        return None if v != v else v
    return str(v)


# The contract checks that the manifest validation (this module) decides; the others are decided by the
# bias report (group_representation, attribute_drift, image_drift, near_duplicates) and the leakage check.
VALIDATION_CHECKS = ("schema", "row_count", "unique_ids", "image_constraints", "required_attributes", "group_values",
                     "labels")
