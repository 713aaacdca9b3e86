"""The whole graph, four times, on the embedded digits in a real Dagster instance and a real MLflow store:
probe_report and registered_model down both sides of the champion/challenger gate, lineage in MLflow and
Dagster, idempotent registration, and the registered model loaded back in a fresh process."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from assets.mlflow_registry import AUTO_REVIEWER, HISTORY_PREFIX, REVIEW_TAG
from pipelines.cli import main
from pipelines.settings import Settings, prepare_instance
from ssl_ops.demo_data import DEMO_TRAIN
from ssl_ops.demo_data import write_demo
from ssl_ops.features import extract_features
from ssl_ops.home import Home
from ssl_ops.manifest import read_manifest
from ssl_ops.review import GateConfig
from ssl_ops.shards import load_index
from ssl_ops.train import load_encoder

ONE_STEP = {"method": "simclr", "backbone": "resnet18", "width": 16, "image_size": DEMO_TRAIN["image_size"],
            "batch_size": 32, "steps": 1, "warmup_steps": 0, "workers": 0, "checkpoint_every": 0, "health_every": 1}


def write_config(path: Path, train: dict, registry: dict | None = None) -> Path:
    path.write_text(json.dumps({"train": train, **({"registry": registry} if registry else {})}))  # JSON is YAML
    return path


def metadata(home: Path, asset: str) -> list[dict]:
    inst = prepare_instance(Settings.from_env(home=home))
    recs = inst.fetch_materializations(dg.AssetKey(asset), limit=100).records
    return [{k: v.value for k, v in r.asset_materialization.metadata.items()} for r in
            sorted(recs, key=lambda r: r.storage_id)]


@pytest.fixture(scope="module")
def rounds(tmp_path_factory):
    """Round 1: two batches, a 1-step encoder (no champion yet: must beat the baselines, does not).
    Round 2: `sslpipe demo`, as a user runs it: the third batch lands and the shipped training default
    trains on all three; the demo's config (<home>/demo.yaml) says registry.approval: auto, so the gate's
    pass makes it the candidate and at once the champion, approved by nobody but the config.
    Round 3: a 1-step encoder at 24 px (the champion's input is 16 px) on the same three batches with a
    human-approval config: registered, fails the gate against the champion and the baselines: stays challenger,
    never the candidate; a reviewer cannot approve it without --force.
    Round 4: round 3 again, with --strict: nothing new registered; exit 3 (version 3 is not promoted)."""
    yield _rounds(tmp_path_factory)


def _rounds(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("registry")
    home = tmp / "home"
    write_demo(Home.resolve(home).ensure())
    shutil.move(home / "landing" / "demo-003", tmp / "demo-003")
    one = write_config(tmp / "one.yaml", ONE_STEP)
    outs, codes = [], []

    def run(argv: list[str]) -> None:  # each round's stdout kept: the results table at its end is tested
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            codes.append(main(argv))
        outs.append(buf.getvalue())

    run(["run", "--home", str(home), "--config", str(one)])
    os.environ.pop("SSLPIPE_CONFIG", None)  # round 1 exported it in this process; a user's new shell has none
    run(["demo", "--home", str(home)])  # writes demo-003 again; shipped defaults throughout
    human = write_config(tmp / "human.yaml", {**ONE_STEP, "image_size": 24}, {"approval": "human"})  # not the champion's
    run(["run", "--home", str(home), "--config", str(human)])
    run(["run", "--home", str(home), "--config", str(human), "--strict"])  # reused, not promoted: exit 3
    client = MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    before = {k: str(v) for k, v in client.get_registered_model("ssl-encoder").aliases.items()}
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        approve = main(["approve", "ssl-encoder@3", "--reason", "looks fine to me", "--reviewer", "ana",
                        "--home", str(home), "--config", str(human)])
    return {"home": home, "codes": codes, "client": client, "demo_out": outs[1], "outs": outs,
            "aliases_before": before, "approve": (approve, err.getvalue()), "configs": (one, human)}


def test_the_demo_trains_on_every_batch_with_the_shipped_default_and_ends_with_a_champion(rounds):
    home, out = rounds["home"], rounds["demo_out"]
    assert "registered 1 new batch(es): demo-003" in out, out
    assert "materialized eval_leakage, ssl_encoder, probe_report, registered_model" in out, out
    assert "GATE: passed; version 2 of ssl-encoder is the champion (registry.approval: auto)" in out, out
    assert "mlflow ui --backend-store-uri sqlite:///" in out
    # no --config: the demo writes its own, auto approval, and says so
    assert "approval: auto (the demo's config" in out
    assert "registry:\n  approval: auto\n" in (home / "demo.yaml").read_text()
    demo = [m for m in metadata(home, "ssl_encoder") if m["steps"] == DEMO_TRAIN["steps"]]
    assert len(demo) == 1 and demo[0]["batches"] == ["demo-001", "demo-002", "demo-003"]
    losses = [json.loads(x)["loss"] for x in (home / "models" / demo[0]["run_key"] / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == DEMO_TRAIN["steps"] and sum(losses[-10:]) < sum(losses[:10])
    idx = [load_index(home / "shards" / f"demo-00{i}" / "index.json") for i in (1, 2, 3)]
    ev = read_manifest(home / "manifests" / "eval" / "accepted.parquet")
    assert sum(i.samples for i in idx) + ev.num_rows == 1797  # every digit is either trained on or evaluated
    champ = rounds["client"].get_model_version_by_alias("ssl-encoder", "champion")
    assert champ.tags["sslpipe.run_key"] == demo[0]["run_key"] and str(champ.version) == "2"
    review = json.loads(champ.tags[REVIEW_TAG])
    assert (review["status"], review["reviewer"], review["action"]) == ("approved", AUTO_REVIEWER, "approve")
    assert (review["from_version"], review["to_version"]) == (None, "2") and review["forced"] is False


def probe_file(home: Path, run_key: str) -> dict:
    (p,) = (home / "models" / run_key / "probe").glob("*.json")
    return json.loads(p.read_text())


def versions(client):
    return {str(v.version): v for v in client.search_model_versions("name = 'ssl-encoder'")}


def history(client) -> list[dict]:
    return [json.loads(t) for k, t in sorted(client.get_registered_model("ssl-encoder").tags.items())
            if k.startswith(HISTORY_PREFIX)]


def test_gate_promotes_the_better_model_and_refuses_worse_ones_with_the_reason_in_their_card(rounds):
    assert rounds["codes"] == [0, 0, 0, 3]  # a failed gate is a decision, not a failure (exit 3 only with --strict)
    client = rounds["client"]
    v = versions(client)
    assert sorted(v) == ["1", "2", "3"]  # round 4 registered nothing new
    aliases = client.get_registered_model("ssl-encoder").aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": "2", "challenger": "3"}  # no candidate left
    assert rounds["aliases_before"] == {"champion": "2", "challenger": "3"}

    first = json.loads(v["1"].tags["sslpipe.gate"])
    assert not first["passed"] and first["against"] == "baselines"
    assert "**not promoted** (stays challenger)" in v["1"].description
    assert "every new model must beat both baselines" in v["1"].description
    assert json.loads(v["1"].tags[REVIEW_TAG])["status"] == "gate_failed"

    champ = json.loads(v["2"].tags["sslpipe.gate"])
    assert champ["passed"] and champ["against"] == "baselines" and champ["summary"].startswith("passed ")
    assert "**passed: promoted to champion** (registry.approval: auto, no reviewer)" in v["2"].description

    worse = json.loads(v["3"].tags["sslpipe.gate"])
    assert not worse["passed"] and worse["against"] == "champion" and worse["summary"].startswith("failed: ")
    assert "primary_metric: linear" in worse["summary"] and "vs champion" in worse["summary"]
    # the baselines are checked with a champion in place too
    assert "baselines: linear" in worse["summary"] and "does not beat raw pixels" in worse["summary"]
    assert worse["config"]["seed_margin"] == GateConfig().seed_margin  # the margins the review shows

    # the champion re-probed beside its successor (24 px) from the eval images decoded at its own 16 px: the
    # figures of its own report on the same split
    home = rounds["home"]
    own = probe_file(home, v["2"].tags["sslpipe.run_key"])
    later = probe_file(home, v["3"].tags["sslpipe.run_key"])
    assert later["champion_version"] == "2" and own["champion_version"] is None
    assert (later["model"]["image_size"], later["champion"]["image_size"]) == (24, DEMO_TRAIN["image_size"])
    assert later["split"] == own["split"]
    assert json.dumps(later["champion"], sort_keys=True) == json.dumps(own["model"], sort_keys=True)
    assert "**not promoted** (stays challenger)" in v["3"].description and "candidate" not in v["3"].description
    assert "(version 2)" in v["3"].description and "| champion |" in v["3"].description
    state = json.loads(v["3"].tags[REVIEW_TAG])
    assert (state["status"], state["reviewer"]) == ("gate_failed", None) and state["reason"] == worse["summary"]
    card = client.download_artifacts(v["3"].run_id, "model_card.md")
    assert Path(card).read_text() == v["3"].description

    # a reviewer cannot approve a version whose gate failed without --force: refused, nothing changed
    code, err = rounds["approve"]
    assert code == 1 and "version 3 failed its gate" in err and "needs --force" in err

    hist = history(client)
    assert [(h["alias"], h["from_version"], h["to_version"], h["action"], h["reviewer"]) for h in hist] == [
        ("challenger", None, "1", "register", None),  # round 1: failed, challenger only
        ("challenger", "1", "2", "register", None),  # round 2 (demo): passed ...
        ("candidate", None, "2", "gate", None),  # ... the candidate ...
        ("champion", None, "2", "approve", AUTO_REVIEWER),  # ... approved by the demo's config ...
        ("candidate", "2", None, "approve", AUTO_REVIEWER),  # ... so no longer waiting for review
        ("challenger", "2", "3", "register", None)]  # round 3: failed; round 4: nothing
    assert hist[2]["reason"].startswith("the gate passed: passed ") and "against the baselines" in hist[2]["reason"]
    assert hist[3]["reason"].startswith("registry.approval is auto; the gate passed: passed ")
    assert hist[4]["reason"].startswith("approved as champion: registry.approval is auto")
    assert all(h["time"] and h["dagster_run_id"] for h in hist)
    assert len({h["dagster_run_id"] for h in hist[1:5]}) == 1 != len({h["dagster_run_id"] for h in hist})
    assert not any(h.get("forced") for h in hist)


def test_each_version_carries_its_lineage_and_the_dagster_materialization_links_back(rounds):
    home, client = rounds["home"], rounds["client"]
    v2 = versions(client)["2"]
    enc = [m for m in metadata(home, "ssl_encoder") if m["steps"] > 1][-1]
    digests = {b: json.loads((home / "shards" / b / "index.json").read_text())["digest"]
               for b in ("demo-001", "demo-002", "demo-003")}
    assert v2.tags["sslpipe.batches"] == "demo-001,demo-002,demo-003"
    assert json.loads(v2.tags["sslpipe.shard_index_digests"]) == digests
    manifests = json.loads(v2.tags["sslpipe.manifest_digests"])
    assert sorted(manifests) == sorted(digests) and all(len(d) == 64 for d in manifests.values())
    assert json.loads(v2.tags["sslpipe.contract_versions"]) == ["unlabeled_images@1.0.0"]
    ev = metadata(home, "eval_images")[-1]
    assert v2.tags["sslpipe.eval_digest"] == ev["eval_digest"]
    assert v2.tags["sslpipe.git_sha"] and v2.tags["dagster.run_id"] and v2.tags["sslpipe.run_key"] == enc["run_key"]
    assert v2.run_id == enc["mlflow_run_id"]  # the model lives in the training run

    run = client.get_run(v2.run_id)
    inputs = {(d.dataset.name, d.dataset.digest, {t.key: t.value for t in d.tags}["mlflow.data.context"])
              for d in run.inputs.dataset_inputs}
    assert {(f"shards/{b}", d[:36], "training") for b, d in digests.items()} <= inputs
    assert ("eval_images", ev["eval_digest"][:36], "eval") in inputs
    for key in ("probe_model_linear", "probe_raw_pixels_linear", "probe_random_init_linear", "probe_model_knn20",
                "probe_model_linear_at_1pct", "probe_health_uniformity", "gate_passed"):
        assert key in run.data.metrics, key
    assert run.data.metrics["probe_model_linear"] > run.data.metrics["probe_raw_pixels_linear"]
    plots = {a.path for a in client.list_artifacts(v2.run_id, "plots")}
    assert plots == {"plots/training_curves.png", "plots/accuracy_vs_label_fraction.png",
                     "plots/eval_embeddings_2d.png"}

    reg = metadata(home, "registered_model")
    assert [m["version"] for m in reg] == ["1", "2", "3", "3"] and [m["reused"] for m in reg] == [False] * 3 + [True]
    assert [(m["gate_passed"], m["review"]) for m in reg] == [
        (False, "gate_failed"), (True, "approved"), (False, "gate_failed"), (False, "gate_failed")]
    assert [m["champion_version"] for m in reg] == ["none", "2", "2", "2"]
    assert "promoted" not in reg[1] and reg[1]["model_version"].endswith("/#/models/ssl-encoder/versions/2")
    assert "## Gate decision" in reg[1]["model_card"]
    probes = metadata(home, "probe_report")
    assert probes[-1]["champion_version"] == "2" and "| champion |" in probes[-1]["probes"]


def test_the_registered_model_loads_in_a_fresh_process_and_embeds_like_the_trained_encoder(rounds, tmp_path):
    home, client = rounds["home"], rounds["client"]
    v2 = versions(client)["2"]
    encoder, meta = load_encoder(home / "models" / v2.tags["sslpipe.run_key"] / "encoder.pt")
    rng = np.random.default_rng(0)
    cases = {"rgb": rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8),
             "odd_size_rgba": rng.integers(0, 256, (3, 41, 57, 4), dtype=np.uint8),
             "gray": rng.integers(0, 256, (2, 20, 20, 1), dtype=np.uint8)}
    for name, x in cases.items():
        np.save(tmp_path / f"{name}.npy", x)
    code = (
        "import sys, mlflow, numpy as np\n"
        f"mlflow.set_tracking_uri({('sqlite:///' + str(home / 'mlflow' / 'mlflow.db'))!r})\n"
        "m = mlflow.pyfunc.load_model('models:/ssl-encoder@champion')\n"
        f"for name in {sorted(cases)!r}:\n"
        f"    np.save({str(tmp_path)!r} + f'/{{name}}.out.npy', m.predict(np.load({str(tmp_path)!r} + f'/{{name}}.npy')))\n"
        "try:\n"
        "    m.predict(np.zeros((1, 8, 8, 3), dtype=np.float32))\n"
        "except Exception as e:\n"
        "    print('REFUSED', type(e).__name__, e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "REFUSED" in r.stdout and "uint8" in r.stdout
    for name, x in cases.items():
        got = np.load(tmp_path / f"{name}.out.npy")
        rgb = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x[..., :3]
        want = extract_features(encoder, torch.from_numpy(rgb).permute(0, 3, 1, 2).contiguous(), meta["image_size"])
        assert got.dtype == np.float32 and got.shape == (len(x), want.shape[1]), name
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def _end(out: str) -> str:
    """What a run prints after its runs: the results table, the gate's line and the next commands."""
    return out[out.index("RESULTS on the eval set"):]


def test_each_run_ends_with_the_results_table_the_gate_line_and_commands_that_work(rounds, tmp_path):
    """sslpipe run / demo end with the table from this run's probe report (the figures of the report file itself),
    the gate's decision (a WARNING with the failed checks when not promoted), the reused case said, and commands
    that work as printed."""
    home, outs = rounds["home"], rounds["outs"]
    demo = _end(outs[1])
    rec = json.loads((home / "records" / "probe_report.json").read_text())["value"]
    for out, version in ((demo, "2"),):
        lines = out.splitlines()
        row = next(ln for ln in lines if ln.strip().startswith(f"new model: version {version} of ssl-encoder"))
        assert "(the champion)" in row
        reports = [json.loads(p.read_text()) for p in (home / "models").glob("*/probe/*.json")]
        rep = next(r for r in reports if r["run_key"] == rounds["client"].get_model_version(
            "ssl-encoder", version).tags["sslpipe.run_key"])
        m = rep["model"]
        assert f"{100 * m['knn20']:.1f}%" in row and f"{100 * m['linear']:.1f}% [{100 * m['linear_ci'][0]:.1f}, " in row
        assert f"{100 * m['label_fractions']['0.1']['mean']:.1f}%" in row
        raw = next(ln for ln in lines if ln.strip().startswith("raw pixels"))
        assert f"{100 * rep['raw_pixels']['linear']:.1f}%" in raw
        assert any(ln.strip().startswith("random init") for ln in lines)
    assert "GATE: passed; version 2 of ssl-encoder is the champion (registry.approval: auto)" in demo
    assert "WARNING" not in demo and "exit status" not in demo
    assert f"--config {home / 'demo.yaml'}" in demo and f"SSLPIPE_HOME={home}" in demo  # not the default home
    assert "mlflow ui --backend-store-uri sqlite:///" in demo and ":5000" not in demo

    first = _end(outs[0])  # 1 step, no champion: must beat both baselines, does not
    assert "WARNING: version 1 of ssl-encoder did NOT pass the gate and was not promoted: baselines: " in first
    assert "every new model must beat both baselines; there is no champion yet" in first
    assert first.rstrip().endswith("exit status 0: the run went well, but version 1 was not promoted (with --strict "
                                   "this exits 3)")
    third = _end(outs[2])  # against the champion, beside it in the table
    assert "champion (version 2)" in third and "WARNING: version 3 of ssl-encoder did NOT pass the gate" in third
    warning = next(ln for ln in third.splitlines() if ln.startswith("WARNING: version 3"))
    assert ("baselines: " in warning or "primary_metric: " in warning) and "the champion is still version 2" in third
    fourth = _end(outs[3])  # the same encoder again, --strict: reused, said, exit 3
    assert "training reused: nothing new was registered; these are the figures of version 3" in fourth
    assert "version 3 of ssl-encoder" in fourth and "champion (version 2)" in fourth
    assert fourth.rstrip().endswith("exit status 3 (--strict): the run went well but version 3 was not promoted")
    assert rec["run_key"] == rounds["client"].get_model_version("ssl-encoder", "3").tags["sslpipe.run_key"]

    # the printed "see why" command, run as printed in a shell from another folder, reviews version 3 of this home
    why = next(ln for ln in third.splitlines() if "see why:" in ln).split("see why:", 1)[1].strip()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("SSLPIPE_HOME", None)
    env.pop("SSLPIPE_CONFIG", None)
    r = subprocess.run(["bash", "-c", why], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "GATE FAILED against the champion" in r.stdout, (why, r.stdout[-2000:], r.stderr[-2000:])
