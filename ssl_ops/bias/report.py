"""Assemble a batch's bias report (JSON + Markdown) from a manifest and earlier batches' manifests.

    report = bias_report("b1", manifest, reference, contract.bias, groups={"domain": (0.2, ())},
                         declared=contract.required_attributes)
    report.flags  # {"group_representation": True, "attribute_drift": False, ...}
    report.unchecked  # sidecar attributes the contract does not declare: their shares, "not checked"
    report.to_markdown()  # bias.md: every value from the data escaped (ssl_ops.escape)

An attribute in the batch's metadata.csv / metadata.jsonl that the contract neither lists under
attributes.groups nor under attributes.required is not silently ignored: the report lists it with its
values' shares (the most frequent UNCHECKED_TOP_VALUES, the rest summed) as "not checked: declare it in the
contract to enforce a minimum share". It flags nothing: no check fails for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pyarrow as pa

from data_contracts.contract import BiasRules
from ssl_ops.bias.drift import Drift, categorical_drift, numeric_drift
from ssl_ops.bias.near_duplicates import NearDuplicates, near_duplicates
from ssl_ops.bias.representation import GroupShares, group_shares
from ssl_ops.escape import md_code, md_text
from ssl_ops.manifest import ATTR_PREFIX
from ssl_ops.pixel_match import PixelMatcher

IMAGE_STATS = ("width", "height", "bytes", "brightness", "contrast")
MIN_REFERENCE = 20  # reference images needed before drift is measured
UNCHECKED_TOP_VALUES = 10  # values of an undeclared attribute listed by name (the most frequent); the rest summed
NOT_CHECKED = "not checked: declare it in the contract to enforce a minimum share"


@dataclass
class UncheckedAttribute:
    """A sidecar attribute the contract does not declare: its values' shares, for the reader; no check on it."""
    attribute: str
    distinct: int  # distinct values (missing counted as one, MISSING)
    counts: dict[str, int]  # the most frequent values -> images
    shares: dict[str, float]  # the same values -> share of the batch (0..1)
    other_values: int = 0  # distinct values not listed
    other_share: float = 0.0  # their share of the batch together

    def describe(self, esc: Callable[[object], str] = str) -> str:
        """One line: `attr: v1 50.0%, v2 30.0%, ... (+K more values, 20.0%) - not checked: ...`."""
        vals = ", ".join(f"{esc(v)} {s:.1%}" for v, s in self.shares.items())
        more = f" (+{self.other_values} more values, {self.other_share:.1%})" if self.other_values else ""
        return f"{esc(self.attribute)}: {vals}{more} - {NOT_CHECKED}"


def unchecked_attribute(attribute: str, values: list, top: int = UNCHECKED_TOP_VALUES) -> UncheckedAttribute:
    g = group_shares(attribute, values, 0.0)
    ranked = sorted(g.counts.items(), key=lambda kv: (-kv[1], kv[0]))
    keep, rest = ranked[:top], ranked[top:]
    n = max(len(values), 1)
    return UncheckedAttribute(attribute, len(ranked), dict(keep), {v: c / n for v, c in keep}, len(rest),
                              sum(c for _, c in rest) / n)


@dataclass
class BiasReport:
    batch: str
    images: int
    reference_batches: list[str]
    reference_images: int
    groups: list[GroupShares]
    attribute_drift: list[Drift]
    image_drift: list[Drift]
    near_duplicates: NearDuplicates
    notes: list[str] = field(default_factory=list)
    unchecked: list[UncheckedAttribute] = field(default_factory=list)  # attributes the contract does not declare

    @property
    def flags(self) -> dict[str, bool]:
        return {"group_representation": any(g.flagged for g in self.groups),
                "attribute_drift": any(d.drifted for d in self.attribute_drift),
                "image_drift": any(d.drifted for d in self.image_drift),
                "near_duplicates": self.near_duplicates.flagged}

    def findings(self, check: str, esc: Callable[[object], str] = str) -> str:
        """One line on `check`; `esc` is applied to every value from the data (md_text for Markdown; the plain
        text is escaped where it is shown, e.g. ssl_ops.escape.terminal)."""
        if check == "group_representation":
            bad = [f"{esc(g.attribute)}={esc(v)} {g.shares[v]:.1%} < {g.min_share:.0%}" for g in self.groups
                   for v in g.under]
            ok = "; ".join(bad) or f"all {sum(len(g.shares) for g in self.groups)} group values at or above their minimum share"
            if self.unchecked:
                ok += (f"; {', '.join(esc(u.attribute) for u in self.unchecked)} not checked (not declared in the "
                       "contract)")
            return ok
        if check in ("attribute_drift", "image_drift"):
            ds = getattr(self, check)
            if not ds:
                return esc(next((n for n in self.notes if n.startswith("drift")), "not measured"))
            bad = [f"{esc(d.feature)} psi={d.psi:.3f} p={d.p_value:.2g}" for d in ds if d.drifted]
            return "; ".join(bad) or f"no drift in {len(ds)} feature(s) (max psi {max(d.psi for d in ds):.3f})"
        nd = self.near_duplicates
        flat = f"; {nd.flat_images} flat image(s) not compared" if nd.flat_images else ""
        px = (f" confirmed by the pixels (mean difference <= {nd.max_pixel_difference:g}, correlation >= "
              f"{nd.min_correlation:g})" if nd.max_pixel_difference is not None else "")
        rej = (f"; {nd.not_confirmed_count} pHash match(es) not confirmed by the pixels (different images, not counted)"
               if nd.not_confirmed_count else "")
        return (f"{nd.images_in_clusters} of {self.images} images ({nd.share:.1%}) in {nd.cluster_count} near-duplicate "
                f"cluster(s) at <= {nd.max_bits} bits{px}; {nd.cross_batch_count} near copies of earlier batches{flat}{rej}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["flags"] = self.flags
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)

    def to_markdown(self) -> str:
        f = self.flags
        refs = ", ".join(md_code(b) for b in self.reference_batches) or "none"
        lines = [f"# Bias report: batch {md_code(self.batch)}", "",
                 f"{self.images} images; reference: {self.reference_images} images from "
                 f"{len(self.reference_batches)} earlier batch(es): {refs}.", "",
                 "| check | flagged | finding |", "|---|---|---|"]
        lines += [f"| {c} | {'**yes**' if f[c] else 'no'} | {self.findings(c, md_text)} |" for c in f]
        for g in self.groups:
            lines += ["", f"## Group {md_code(g.attribute)} (minimum share {g.min_share:.0%})", "",
                      "| value | images | share |", "|---|---|---|"]
            lines += [f"| {md_text(v)}{' **(under)**' if v in g.under else ''} | {g.counts[v]} | {g.shares[v]:.1%} |"
                      for v in g.counts]
        if self.unchecked:
            lines += ["", "## Attributes not checked", "",
                      "The batch's metadata has these attributes; the contract does not declare them, so no minimum "
                      "share is enforced. Declare one under `attributes.groups` in the contract to enforce a minimum "
                      "share.", ""]
            for u in self.unchecked:
                lines += [f"- {md_code(u.attribute)} ({u.distinct} distinct values): " + ", ".join(
                    f"{md_text(v)} {u.shares[v]:.1%}" for v in u.counts)
                          + (f" (+{u.other_values} more values, {u.other_share:.1%})" if u.other_values else "")
                          + f": {NOT_CHECKED}"]
        drifts = self.attribute_drift + self.image_drift
        if drifts:
            lines += ["", "## Drift against the reference", "", "| feature | PSI | test | statistic | p-value | drifted |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {md_text(d.feature)} | {d.psi:.4f} | {d.test} | {d.statistic:.4g} | {d.p_value:.3g} | "
                      f"{'**yes**' if d.drifted else 'no'} |" for d in drifts]
        nd = self.near_duplicates
        lines += ["", f"## Near duplicates (pHash distance <= {nd.max_bits} bits)", ""]
        lines += [f"- {len(c)} images: " + ", ".join(md_code(p) for p in c[:6]) + (" ..." if len(c) > 6 else "")
                  for c in nd.clusters[:10]] or ["- none within the batch"]
        lines += [f"- {md_code(m['path'])} ~ {md_code(m['matches'])} ({m['bits']} bits)" for m in nd.cross_batch[:10]]
        lines += [f"- not counted: {md_code(m['path'])} ~ {md_code(m['matches'])} ({m['bits']} bits): pHash match not "
                  f"confirmed: mean pixel difference {m['difference']:.1f}, correlation {m['correlation']:.2f}"
                  for m in nd.not_confirmed[:10]]
        lines += [""] + [f"> {md_text(n)}" for n in self.notes]
        return "\n".join(lines) + "\n"


def bias_report(batch: str, manifest: pa.Table, reference: pa.Table | None, thresholds: BiasRules,
                groups: dict[str, tuple[float, tuple[str, ...]]], sources: dict | None = None,
                declared: tuple[str, ...] | list[str] = ()) -> BiasReport:
    """groups: attribute -> (min_share, expected values). reference: earlier batches' manifests, concatenated.
    sources: where the images' bytes are, to confirm pHash near duplicates by the pixels (ssl_ops.pixel_match):
    "batch" (by path in the batch) and "reference" (by "<batch>/<path>"); None: pHash alone decides.
    declared: the contract's other attributes (attributes.required); any other sidecar attribute of the batch is
    listed as not checked."""
    notes = []
    cols = manifest.column_names
    shares = []
    for g, (min_share, expected) in groups.items():
        if ATTR_PREFIX + g not in cols:
            notes.append(f"group attribute {g!r} is absent from the batch (no sidecar column); every image counts as missing")
            values = [None] * manifest.num_rows
        else:
            values = manifest.column(ATTR_PREFIX + g).to_pylist()
        shares.append(group_shares(g, values, min_share, expected))
    known = set(groups) | set(declared)
    unchecked = [unchecked_attribute(c[len(ATTR_PREFIX):], manifest.column(c).to_pylist())
                 for c in cols if c.startswith(ATTR_PREFIX) and c[len(ATTR_PREFIX):] not in known]

    ref_batches = sorted(set(reference.column("batch").to_pylist())) if reference is not None else []
    ref_n = reference.num_rows if reference is not None else 0
    attr_drift, img_drift = [], []
    if ref_n < MIN_REFERENCE or manifest.num_rows == 0:
        notes.append(f"drift not measured: {ref_n} reference images from earlier batches (needs {MIN_REFERENCE})")
    else:
        t = thresholds
        for c in IMAGE_STATS:
            img_drift.append(numeric_drift(c, reference.column(c).to_numpy(), manifest.column(c).to_numpy(),
                                           t.psi_max, t.p_value_min))
        attrs = sorted({n for n in cols if n.startswith(ATTR_PREFIX)} & set(reference.column_names))
        for c in ["format", "mode"] + attrs:
            attr_drift.append(categorical_drift(c.removeprefix(ATTR_PREFIX), reference.column(c).to_pylist(),
                                                manifest.column(c).to_pylist(), t.psi_max, t.p_value_min))
    paths = manifest.column("path").to_pylist()
    ref_names = ([f"{b}/{p}" for b, p in zip(reference.column("batch").to_pylist(), reference.column("path").to_pylist())]
                 if ref_n else None)
    nd = near_duplicates(paths, manifest.column("phash").to_numpy(), thresholds.near_duplicate_bits,
                         thresholds.near_duplicate_max_share, ref_names,
                         reference.column("phash").to_numpy() if ref_n else None,
                         contrast=manifest.column("contrast").to_numpy(),
                         ref_contrast=reference.column("contrast").to_numpy() if ref_n else None,
                         matcher=PixelMatcher(sources, thresholds.near_duplicate_max_pixel_difference,
                                              thresholds.near_duplicate_min_correlation) if sources else None,
                         ids=manifest.column("sample_id").to_pylist(),
                         ref_ids=reference.column("sample_id").to_pylist() if ref_n else None)
    return BiasReport(batch, manifest.num_rows, ref_batches, ref_n, shares, attr_drift, img_drift, nd, notes,
                      unchecked)
