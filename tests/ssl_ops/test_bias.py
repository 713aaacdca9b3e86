"""Bias report: representation, drift statistics against independent computations, near duplicates."""

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from data_contracts.contract import BiasRules
from ssl_ops.bias import bias_report
from ssl_ops.bias.drift import categorical_drift, numeric_drift, psi
from ssl_ops.bias.representation import group_shares
from ssl_ops.manifest import accepted_schema


def test_psi_formula():
    e, a = np.array([50, 30, 20]), np.array([20, 30, 50])
    ref = sum((x - y) * np.log(x / y) for x, y in zip(a / 100, e / 100))
    assert psi(e, a) == pytest.approx(ref)
    assert psi(e, e) == 0.0


def test_numeric_drift_flags_a_real_shift_only():
    rng = np.random.default_rng(0)
    ref = rng.normal(100, 10, 5000)
    same = numeric_drift("b", ref, rng.normal(100, 10, 3000), psi_max=0.25, p_min=0.001)
    moved = numeric_drift("b", ref, rng.normal(115, 10, 3000), psi_max=0.25, p_min=0.001)
    assert not same.drifted and same.psi < 0.05
    assert moved.drifted and moved.psi > 0.5
    assert moved.statistic == pytest.approx(stats.ks_2samp(ref, rng.normal(115, 10, 3000)).statistic, abs=0.05)


def test_categorical_drift_uses_chi_square():
    ref = ["a"] * 500 + ["b"] * 500
    cur = ["a"] * 900 + ["b"] * 100
    d = categorical_drift("domain", ref, cur, psi_max=0.25, p_min=0.001)
    expected = stats.chi2_contingency(np.array([[500, 500], [900, 100]]))
    assert d.statistic == pytest.approx(expected.statistic) and d.p_value == pytest.approx(expected.pvalue)
    assert d.drifted and d.detail["current_shares"] == {"a": 0.9, "b": 0.1}


def test_group_shares_flag_values_under_the_minimum_and_absent_expected_values():
    g = group_shares("domain", ["p"] * 17 + ["s"] * 83 + [None] * 0, 0.2, expected=("p", "s", "c"))
    assert g.shares == {"c": 0.0, "p": 0.17, "s": 0.83} and g.under == ["c", "p"] and g.flagged
    assert not group_shares("domain", ["p", "s"], 0.5).flagged


def manifest(n, batch, brightness, domains, hashes):
    schema = accepted_schema(["domain"])
    rows = {"sample_id": [f"{batch}{i:062d}" for i in range(n)], "batch": [batch] * n, "path": [f"{i}.jpg" for i in range(n)],
            "bytes": [1000] * n, "format": ["JPEG"] * n, "width": [32] * n, "height": [32] * n, "mode": ["RGB"] * n,
            "phash": hashes, "brightness": brightness, "contrast": [40.0] * n, "attr_domain": domains}
    return pa.table(rows, schema=schema)


def test_report_end_to_end():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2**63, 400, dtype=np.uint64)
    ref = manifest(400, "a", rng.normal(120, 20, 400).tolist(), ["x", "y"] * 200, base)
    hashes = rng.integers(0, 2**63, 100, dtype=np.uint64)
    hashes[1] = hashes[0] ^ np.uint64(3)  # a near pair inside the batch
    hashes[2] = base[7] ^ np.uint64(1)  # a near copy of an earlier image
    cur = manifest(100, "b", rng.normal(170, 20, 100).tolist(), ["x"] * 90 + ["y"] * 10, hashes)
    r = bias_report("b", cur, ref, BiasRules(near_duplicate_max_share=0.01), {"domain": (0.2, ())})
    assert r.flags == {"group_representation": True, "attribute_drift": True, "image_drift": True,
                       "near_duplicates": True}
    assert [d.feature for d in r.image_drift if d.drifted] == ["brightness"]
    assert r.near_duplicates.clusters == [["0.jpg", "1.jpg"]] and r.near_duplicates.cluster_count == 1
    assert r.near_duplicates.cross_batch == [{"path": "2.jpg", "matches": "a/7.jpg", "bits": 1}]
    assert r.near_duplicates.cross_batch_count == 1
    md = r.to_markdown()
    assert "domain=y 10.0% < 20%" in md and "| brightness |" in md
    first = bias_report("a", ref, None, BiasRules(), {"domain": (0.2, ())})
    assert not first.flags["image_drift"] and "drift not measured" in first.findings("image_drift")


def test_flat_images_are_not_near_duplicates_of_each_other():
    import time

    from ssl_ops.bias.near_duplicates import near_duplicates

    n = 6000  # blank frames all hash alike: compared pairwise they would take minutes and gigabytes
    contrast = np.zeros(n)
    contrast[:10] = 30.0
    hashes = np.zeros(n, np.uint64)
    hashes[:10] = np.random.default_rng(0).integers(0, 2**63, 10, dtype=np.uint64)  # 10 textured images...
    hashes[1] = hashes[0]  # ...two of them near copies
    t = time.perf_counter()
    nd = near_duplicates([f"{i}.png" for i in range(n)], hashes, 4, 0.05, contrast=contrast, keep=0)
    assert time.perf_counter() - t < 5
    assert nd.clusters == [] and nd.cluster_count == 1 and nd.images_in_clusters == 2  # keep=0: counted, not listed
    assert nd.flat_images == n - 10 and not nd.flagged


HOSTILE_ATTR = "site<script>alert(1)</script>\x1b[2J|`"
HOSTILE_VALUES = ["<img src=x onerror=alert(1)>", "\x1b[31mred\x1b[0m", "a|b`c\nnext", "bidi\u202eevil"]


def sidecar_manifest(n: int, attrs: dict[str, list]) -> pa.Table:
    schema = accepted_schema(sorted(attrs))
    rows = {"sample_id": [f"{i:064d}" for i in range(n)], "batch": ["b"] * n, "path": [f"{i}.jpg" for i in range(n)],
            "bytes": [1000] * n, "format": ["JPEG"] * n, "width": [32] * n, "height": [32] * n, "mode": ["RGB"] * n,
            "phash": np.random.default_rng(0).integers(0, 2**63, n, dtype=np.uint64), "brightness": [100.0] * n,
            "contrast": [40.0] * n, **{f"attr_{k}": v for k, v in attrs.items()}}
    return pa.table(rows, schema=schema)


def test_attributes_the_contract_does_not_declare_are_listed_with_their_shares_as_not_checked():
    import json
    import re

    from ssl_ops.bias.report import NOT_CHECKED
    from ssl_ops.escape import md_code, md_text, terminal
    from ssl_ops.review.compare import bias_summary
    from ssl_ops.review.render import _bias_lines

    n = 40
    site = [HOSTILE_VALUES[0]] * 20 + [HOSTILE_VALUES[1]] * 12 + [HOSTILE_VALUES[2]] * 6 + [None] * 2
    ids = [f"id{i}" for i in range(n)]  # 40 distinct values: the 10 most frequent named, the rest summed
    m = sidecar_manifest(n, {"domain": ["x", "y"] * 20, HOSTILE_ATTR: site, "camera_id": ids, "label": ["l"] * n})
    r = bias_report("b", m, None, BiasRules(), {"domain": (0.2, ())}, declared=("label",))
    assert [u.attribute for u in r.unchecked] == sorted([HOSTILE_ATTR, "camera_id"])  # not domain, not label
    u = next(u for u in r.unchecked if u.attribute == HOSTILE_ATTR)
    assert u.shares == {HOSTILE_VALUES[0]: 0.5, HOSTILE_VALUES[1]: 0.3, HOSTILE_VALUES[2]: 0.15, "(missing)": 0.05}
    assert u.distinct == 4 and u.other_values == 0
    ids_u = next(u for u in r.unchecked if u.attribute == "camera_id")
    assert len(ids_u.shares) == 10 and ids_u.distinct == 40 and ids_u.other_values == 30
    assert ids_u.other_share == pytest.approx(0.75)
    assert not r.flags["group_representation"]  # listed, not flagged: nothing to check them against
    assert "not checked (not declared in the contract)" in r.findings("group_representation")

    md = r.to_markdown()
    assert "## Attributes not checked" in md and md.count(NOT_CHECKED) == 2
    assert md_code(HOSTILE_ATTR) in md and md_text(HOSTILE_VALUES[0]) + " 50.0%" in md
    rest = md.replace(md_code(HOSTILE_ATTR), "")  # a code span shows its text literally: markup in it is inert
    assert "<script>" not in rest and "<img" not in rest and "\x1b" not in md and "\u202e" not in md
    assert "(+30 more values, 75.0%)" in md
    d = json.loads(r.to_json())
    assert [x["attribute"] for x in d["unchecked"]] == sorted([HOSTILE_ATTR, "camera_id"])

    # `sslpipe review` shows them beside the groups (text through terminal(), HTML escaped)
    lines = _bias_lines(bias_summary("b", d))
    line = next(ln for ln in lines if ln.startswith(f"attribute {HOSTILE_ATTR}"))
    assert line.endswith("; " + NOT_CHECKED) and f"{HOSTILE_VALUES[1]}=30.0%" in line
    shown = terminal(line)
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e]", shown) and "\\x1b[31mred" in shown

    # no undeclared attribute: nothing listed
    plain = bias_report("b", sidecar_manifest(n, {"domain": ["x", "y"] * 20}), None, BiasRules(), {"domain": (0.2, ())})
    assert plain.unchecked == [] and "Attributes not checked" not in plain.to_markdown()
    assert "not checked" not in plain.findings("group_representation")
