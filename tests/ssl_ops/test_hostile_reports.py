"""bias.md and the model card with hostile values from the data: rendered, they hold no element from the data,
every table row keeps its columns, and the values are shown as they are."""

import html
import re

import numpy as np
import pyarrow as pa
import pytest
from markdown_it import MarkdownIt

from data_contracts.contract import BiasRules
from ssl_ops.bias import bias_report
from ssl_ops.escape import visible
from ssl_ops.manifest import accepted_schema
from ssl_ops.probes import probe_features, probe_split
from ssl_ops.review import GateConfig, decide, model_card

SCRIPT, IMG = "<script>alert(1)</script>", "<img src=x onerror=alert(1)>"
VALUES = [SCRIPT, IMG, "a|b|c", "tick`s", "two\nlines", "# head", "\x1b[31mred"]
BATCH = "b`<img src=y onerror=alert(2)>|x"
OWN_TAGS = {"h1", "h2", "p", "table", "thead", "tbody", "tr", "th", "td", "strong", "ul", "li", "code", "blockquote",
            "em"}


def render(md: str) -> str:
    return MarkdownIt("commonmark").enable("table").enable("strikethrough").render(md)


def tags(rendered: str) -> list[str]:
    return re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", rendered)


def assert_tables_keep_their_columns(md: str):
    """Every table row has as many unescaped `|` as its header: a value cannot add or drop a cell."""
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            n = line.count("|")
            assert lines[i - 1].count("|") == n
            for row in lines[i + 1:]:
                if not row.startswith("|"):
                    break
                assert row.count("|") == n, row


def hostile_manifest(n=60):
    schema = accepted_schema(["domain"])
    paths = [f"{i}`{IMG}|.jpg" for i in range(n)]
    hashes = np.random.default_rng(0).integers(0, 2**63, n, dtype=np.uint64)
    hashes[1] = hashes[0]  # one near-duplicate pair, named by hostile paths
    rows = {"sample_id": [f"{i:064x}" for i in range(n)], "batch": [BATCH] * n, "path": paths,
            "bytes": [1000] * n, "format": ["JPEG"] * n, "width": [32] * n, "height": [32] * n, "mode": ["RGB"] * n,
            "phash": hashes, "brightness": [100.0] * n, "contrast": [40.0] * n,
            "attr_domain": [VALUES[i % len(VALUES)] if i else "rare" for i in range(n)]}
    return pa.table(rows, schema=schema)


def test_bias_md_with_hostile_values_keeps_its_tables_and_shows_the_values():
    r = bias_report(BATCH, hostile_manifest(), None, BiasRules(), {"domain": (0.2, (SCRIPT,))})
    md = r.to_markdown()
    assert_tables_keep_their_columns(md)
    out = render(md)
    assert set(tags(out)) <= OWN_TAGS, set(tags(out)) - OWN_TAGS
    assert "onerror" not in re.sub(r"&lt;img src=[xy] onerror=alert\([12]\)&gt;", "", out)
    text = html.unescape(out)
    for v in VALUES:
        assert visible(v) in text
    assert visible(BATCH) in text and f"0`{IMG}|.jpg" in text  # batch heading and near-duplicate paths
    # the group table: one row per value, three cells each
    group_rows = [line for line in md.splitlines() if line.startswith("| ") and "%" in line and "images" not in line]
    assert len(group_rows) >= len(VALUES)
    assert r.findings("group_representation").startswith("domain=") and SCRIPT in r.findings("group_representation")


def test_model_card_with_a_hostile_batch_folder_and_group_values():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 100)
    x = np.random.default_rng(99).normal(size=(4, 16))[y] * 3 + rng.normal(size=(400, 16))
    groups = {"domain": np.array([SCRIPT, "a|b", "", "tick`s"] * 100, dtype=object)}
    t = probe_features(x, y, probe_split(y, 0.3, 0), groups=groups, draws=2)
    report = {"model": t, "raw_pixels": t, "random_init": t, "classes": list("abcd"),
              "health": {"embedding_std": 0.8, "effective_rank": 30.0, "uniformity": -2.0, "alignment": 0.4},
              "split": {"seed": 0, "test_fraction": 0.3, "n_train": 280, "n_test": 120}}
    d = decide(report, GateConfig(), "simclr", (True, "no eval image in a shard"))
    lineage = {"batches": [BATCH, "plain"], "shard_index_digests": {BATCH: "ab" * 32, "plain": "cd" * 32},
               "manifest_digests": {BATCH: "ef" * 32}, "contracts": {BATCH: "unlabeled_images@1.0.0"},
               "eval_digest": "12" * 32, "git_sha": "123abc", "dagster_run_id": "run-1", "run_key": "key-1",
               "mlflow_run_id": "mlrun"}
    training = {"samples": 400, "steps": 1, "images_seen": 32, "final_loss": 5.0, "images_per_s": 100.0,
                "device": "cpu", "world": 1, "wall_s": 3.0}
    cfg = {"method": "simclr", "backbone": "resnet18", "width": 8, "image_size": 32, "batch_size": 32}
    card = model_card("ssl-encoder", "2", report, d, training, cfg, lineage)
    assert_tables_keep_their_columns(card)
    out = render(card)
    assert set(tags(out)) <= OWN_TAGS, set(tags(out)) - OWN_TAGS
    text = html.unescape(out)
    assert BATCH in text and SCRIPT in text and "a|b" in text and "tick`s" in text
    assert f"<code>{html.escape(BATCH, quote=False)}</code>" in out  # the batch is one code span, whole


def _manifest_of(batch: str, paths: list[str], values: list[str | None]):
    n = len(paths)
    rows = {"sample_id": [f"{i:064x}" for i in range(n)], "batch": [batch] * n, "path": paths,
            "bytes": [1000] * n, "format": ["JPEG"] * n, "width": [32] * n, "height": [32] * n, "mode": ["RGB"] * n,
            "phash": np.arange(n, dtype=np.uint64) * np.uint64(0x0F0F0F0F0F0F0F0F) % np.uint64(2**63),
            "brightness": [100.0] * n, "contrast": [40.0] * n, "attr_domain": values}
    return pa.table(rows, schema=accepted_schema(["domain"]))


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(batch=_TEXT.filter(bool), paths=st.lists(_TEXT.filter(bool), min_size=2, max_size=12, unique=True),
       values=st.lists(st.one_of(st.none(), _TEXT, st.sampled_from([SCRIPT, IMG, "a|b", "`x`", "x&y", "\n#h"])),
                       min_size=12, max_size=12))
def test_bias_md_holds_no_markup_from_any_values(batch, paths, values):
    """Property: for any batch name, file names and attribute values, bias.md renders with only its own elements,
    its tables keep their columns, and every value is shown (made visible) rather than obeyed."""
    vals = values[:len(paths)]
    r = bias_report(batch, _manifest_of(batch, paths, vals), None, BiasRules(near_duplicate_bits=12),
                    {"domain": (0.5, ())})
    md = r.to_markdown()
    assert_tables_keep_their_columns(md)
    out = render(md)
    assert set(tags(out)) <= OWN_TAGS
    shown = html.unescape(re.sub(r"<[^>]+>", "", out))
    for v in {v for v in vals if v}:
        assert visible(v).strip() in shown
