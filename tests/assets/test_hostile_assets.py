"""Hostile data through the real assets: a batch folder whose name holds a backtick and HTML and a metadata.csv
with markup and `|` in its values, materialized by raw_images, validated_images and bias_report (GE data docs,
bias.md, the Dagster Markdown metadata); and eval group values that MLflow refuses in a metric name, logged to a
real MLflow SQLite store by registered_model's metric logging."""

import json
import re
from html.parser import HTMLParser

import dagster as dg
import mlflow
import numpy as np
from markdown_it import MarkdownIt
from mlflow.tracking import MlflowClient

from assets.bias_report import build_bias_report
from assets.partitions import batches
from assets.raw_images import build_raw_images
from assets.registered_model import KEYS_ARTIFACT, log_probe_metrics, probe_metrics
from assets.resources import PipelineHome
from assets.validated_images import build_validated_images
from data_contracts import load_contract
from data_contracts.contract import CONTRACTS_DIR
from imagefiles import jpeg_bytes, write
from ssl_ops.escape import visible
from ssl_ops.probes import probe_features, probe_split

SCRIPT, IMG = "<script>alert(1)</script>", "<img src=x onerror=alert(1)>"
BATCH = "b`<img src=y onerror=alert(2)>"
GROUP_VALUES = ["photo (dslr)", "art+painting", "site#3", "a,b", "x&y"]
UNDECLARED = "__camera__"  # a sidecar column the contract does not declare (names are identifiers: emphasis in Markdown)


class Elements(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def elements(page: str) -> Elements:
    e = Elements()
    e.feed(page)
    e.close()
    return e


def test_batch_assets_escape_a_hostile_batch_and_hostile_values(tmp_path):
    root = tmp_path / "home"
    d = root / "landing" / BATCH
    for i in range(6):
        write(d / f"{i}.jpg", jpeg_bytes(i))
    vals = [SCRIPT, IMG, "a|b|c", "tick`s", SCRIPT, IMG]
    cams = [IMG, "cam|1", IMG, "cam|1", IMG, "\x1b[2Jcam"]  # an attribute the contract does not declare
    (d / "metadata.csv").write_text(f'path,domain,"{UNDECLARED}"\n' + "".join(
        f'{i}.jpg,"{v}","{cam}"\n' for i, (v, cam) in enumerate(zip(vals, cams))))
    c = tmp_path / "c.yaml"
    c.write_text((CONTRACTS_DIR / "unlabeled_images.yaml").read_text().replace(
        "  groups: {}", "  groups: {domain: {min_share: 0.3}}"))
    contract = load_contract(c)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(batches.name, [BATCH])
    result = dg.materialize([build_raw_images(contract), build_validated_images(contract), build_bias_report(contract)],
                            partition_key=BATCH, instance=instance, raise_on_error=False,
                            resources={"home": PipelineHome(root=str(root), workers=1)})
    assert result.success, [e.message for e in result.all_events if e.is_failure]

    md = result.asset_materializations_for_node("bias_report")[0].metadata["report"].value  # shown by the UI
    assert (root / "reports" / BATCH / "bias.md").read_text() == md
    rendered = MarkdownIt("commonmark").enable("table").render(md)
    tags = {t for t, _ in elements(rendered).elements}
    assert tags <= {"h1", "h2", "p", "table", "thead", "tbody", "tr", "th", "td", "strong", "ul", "li", "code",
                    "blockquote"}, tags
    text = "".join(elements(rendered).text)
    assert BATCH in text and SCRIPT in text and IMG in text and "a|b|c" in text and "tick`s" in text
    group_table = md.split("## Group")[1].split("\n\n")[1].splitlines()[2:]  # the rows under its header
    assert len(group_table) == 4 and all(r.count("|") == 4 for r in group_table), group_table
    # the undeclared attribute: listed with its shares as not checked, escaped, in the report and the metadata
    assert f"{UNDECLARED} (3 distinct values): {IMG} 50.0%, cam|1 33.3%, \\x1b[2Jcam 16.7%: not checked: declare it " \
           "in the contract to enforce a minimum share" in text
    assert "\x1b" not in md and "<strong>camera</strong>" not in rendered
    meta = result.asset_materializations_for_node("bias_report")[0].metadata
    assert meta["unchecked_attributes"].value == [UNDECLARED]
    saved = json.loads((root / "reports" / BATCH / "bias.json").read_text())
    assert saved["unchecked"][0]["shares"] == {IMG: 0.5, "cam|1": 2 / 6, "\x1b[2Jcam": 1 / 6}

    pages = list((root / "reports" / BATCH / "data_docs").rglob("*.html"))
    assert pages
    for page in pages:
        e = elements(page.read_text(encoding="utf-8"))
        assert not [a for _, attrs in e.elements for a in attrs if a in ("onerror", "onload")], page
        assert not [attrs for tag, attrs in e.elements if tag == "img" and attrs.get("src") in ("x", "y")], page


def group_report(values):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 100)
    x = np.random.default_rng(99).normal(size=(4, 16))[y] * 3 + rng.normal(size=(400, 16))
    groups = {"domain (camera)": np.array((values * 400)[:400], dtype=object)}
    t = probe_features(x, y, probe_split(y, 0.3, 0), groups=groups, draws=2)
    return {"model": t, "raw_pixels": t, "random_init": t,
            "health": {"embedding_std": 0.8, "effective_rank": 30.0, "uniformity": -2.0, "alignment": 0.4}}


def test_group_values_mlflow_refuses_are_logged_to_a_real_store_with_their_mapping(tmp_path):
    report = group_report(GROUP_VALUES + [""])
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        exp = mlflow.create_experiment("hostile", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp) as run:
            mapping = log_probe_metrics(report, gate_passed=False)
        client = MlflowClient()
        logged = client.get_run(run.info.run_id).data
        artifact = json.loads((tmp_path / "artifacts" / run.info.run_id / "artifacts" / KEYS_ARTIFACT).read_text())
    finally:
        mlflow.set_tracking_uri(before)
    per_group = report["model"]["groups"]["domain (camera)"]["per_group"]
    by_value = {m["values"][1]: k for k, m in mapping.items() if m["prefix"] == "probe_group"}
    assert set(by_value) == set(GROUP_VALUES) | {""}
    for v, key in by_value.items():
        assert logged.metrics[key] == per_group[v]["accuracy"]  # each group's accuracy under its own name
        assert re.fullmatch(r"[A-Za-z0-9_.\- /]+", key) and key.startswith("probe_group/domain _camera_-h")
    assert artifact == mapping and logged.tags["sslpipe.mlflow_keys"] == KEYS_ARTIFACT
    assert logged.metrics["probe_model_linear"] == report["model"]["linear"] and logged.metrics["gate_passed"] == 0.0
    assert [m["values"] for k, m in mapping.items() if m["prefix"] == "probe_worst_group_gap"] == [["domain (camera)"]]
    metrics, _ = probe_metrics(report, True)
    assert set(metrics) == set(logged.metrics)  # nothing dropped on the way
    assert visible("x&y") == "x&y"
