"""`sslpipe lineage` against real parts: the whole graph run once (module fixture) on two demo batches with
awkward files added, into a real Dagster instance (SQLite) and a real MLflow store; every answer is checked
against the home on disk, the instance and the registry themselves.

    PYTHONPATH=$PWD python -m pytest tests/pipelines/test_lineage_cli.py -x -q
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from pipelines.cli import main
from pipelines.settings import Settings, prepare_instance
from ssl_ops.demo_data import write_demo
from ssl_ops.escape import _needs_escape, terminal
from ssl_ops.home import Home
from ssl_ops.lineage_index import file_sha256
from ssl_ops.manifest import read_manifest
from ssl_ops.shards import ShardConfig, shard_batch
from ssl_ops.shards.verify import shard_sample_ids

ROOT = Path(__file__).resolve().parents[2]
TINY = {"method": "simclr", "backbone": "resnet18", "width": 8, "image_size": 32, "batch_size": 32, "steps": 3,
        "warmup_steps": 1, "workers": 0, "checkpoint_every": 0, "health_every": 1}
HOSTILE = "evil\x1b[31mred\u202e<script>alert(1).png"  # an ANSI escape, a bidi override and markup in one name


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two demo batches plus: a copy of a demo-001 image in demo-002 (quarantined duplicate), a copy of an eval
    image in demo-001 (accepted, left out of the shards), a new image with a hostile name; then `sslpipe run`:
    ingest, shards, 3 training steps, probes, registration as ssl-encoder version 1 (the gate fails)."""
    tmp = tmp_path_factory.mktemp("lineage")
    home = tmp / "home"
    h = Home.resolve(home).ensure()
    write_demo(h, batches=2)
    b1 = h.landing / "demo-001"
    first = sorted(b1.glob("digit_*.png"))[0]
    shutil.copy(first, h.landing / "demo-002" / "dup.png")
    eval_image = sorted((h.eval_dir / "images").glob("*.png"))[0]
    shutil.copy(eval_image, b1 / "evalcopy.png")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(b1 / HOSTILE)
    cfg = tmp / "tiny.yaml"
    cfg.write_text(json.dumps({"train": TINY}))
    code = main(["run", "--home", str(home), "--config", str(cfg)])
    yield {"home": home, "h": h, "code": code, "first": first, "eval_image": eval_image, "tmp": tmp,
           "client": MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")}


def lineage(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["lineage", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def as_json(capsys, *args) -> dict:
    code, out, err = lineage(capsys, *args, "--json")
    assert code in (0, 1), err
    return json.loads(out)


def test_the_graph_registered_version_1(built):
    assert built["code"] == 0
    mv = built["client"].get_model_version("ssl-encoder", "1")
    assert mv.tags["sslpipe.batches"] == "demo-001,demo-002"


def test_model_to_data_matches_the_home_the_instance_and_the_registry(built, capsys):
    home, h = built["home"], built["h"]
    rec = as_json(capsys, "ssl-encoder@1", "--home", home)
    mv = built["client"].get_model_version("ssl-encoder", "1")
    assert (rec["model"], rec["version"], rec["aliases"]) == ("ssl-encoder", "1", ["challenger"])
    assert [b["batch"] for b in rec["batches"]] == ["demo-001", "demo-002"]
    assert rec["eval_digest"] == mv.tags["sslpipe.eval_digest"] and len(rec["eval_digest"]) == 64
    assert rec["git_sha"] == mv.tags["sslpipe.git_sha"] and rec["run_key"] == mv.tags["sslpipe.run_key"]
    assert rec["contract_versions"] == json.loads(mv.tags["sslpipe.contract_versions"]) != []
    assert rec["mlflow_run"]["run_id"] == mv.run_id and rec["mlflow_run"]["status"] == "FINISHED"
    recorded = json.loads(mv.tags["sslpipe.shard_index_digests"])
    manifests = json.loads(mv.tags["sslpipe.manifest_digests"])
    instance = prepare_instance(Settings.from_env(home=home))
    for b in rec["batches"]:
        index = json.loads(h.shard_index_path(b["batch"]).read_text())
        assert b["status"] == "unchanged"
        assert b["index_digest_now"] == index["digest"] == b["index_digest_at_training"] == recorded[b["batch"]]
        assert [(s["name"], s["sha256"], s["samples"]) for s in b["shards"]] == \
               [(s["name"], s["sha256"], s["samples"]) for s in index["shards"]]
        for s in b["shards"]:  # the digests printed are those of the files on disk, and of the training
            assert file_sha256(h.shard_dir(b["batch"]) / s["name"]) == s["sha256"] == s["sha256_at_training"]
            assert s["same_as_training"] is True and s["file"] == "present"
        assert b["manifest_digest_now"] == b["manifest_digest_at_training"] == manifests[b["batch"]]
        last = b["image_shards_runs"]["last"]
        flt = dg.AssetRecordsFilter(asset_key=dg.AssetKey("image_shards"), asset_partitions=[b["batch"]])
        newest = instance.fetch_materializations(flt, limit=1).records[0]
        assert last["run_id"] == newest.run_id and instance.get_run_by_id(last["run_id"]) is not None
        assert last["url"] == f"http://127.0.0.1:3000/runs/{newest.run_id}" and last["job"] == "ingest_batch"
        assert last["index_digest"] == index["digest"] and last["writes_index_now"] is True
    assert rec["batches"][0]["excluded_eval_copies"] == 1  # evalcopy.png
    reg = rec["dagster"]["registration_run"]
    assert reg["run_id"] == mv.tags["dagster.run_id"] and instance.get_run_by_id(reg["run_id"]) is not None
    assert reg["status"] == "SUCCESS" and reg["url"] == mv.tags["sslpipe.dagster_run_url"]
    assert rec["dagster"]["training_run"]["run_id"] == built["client"].get_run(mv.run_id).data.tags["dagster.run_id"]
    review = rec["review"]
    assert review["state"] == json.loads(mv.tags["sslpipe.review"]) and review["state"]["status"] == "gate_failed"
    assert [(x["alias"], x["to_version"], x["action"]) for x in review["alias_history"]] == [("challenger", "1", "register")]

    code, out, err = lineage(capsys, "ssl-encoder@1", "--home", home)
    assert code == 0 and err == ""
    assert "every batch's shards are the ones it trained on" in out and "RE-SHARDED" not in out
    for b in rec["batches"]:
        assert f"{b['batch']}: shards unchanged since training (index digest {b['index_digest_now']})" in out
        assert all(s["sha256"] in out for s in b["shards"]) and b["image_shards_runs"]["last"]["url"] in out
    assert reg["url"] in out and rec["mlflow_run"]["url"] in out and rec["git_sha"] in out
    assert "state: gate_failed" in out and "challenger: none -> 1 (register" in out


def test_alias_form_names_the_same_version(built, capsys):
    by_version = as_json(capsys, "ssl-encoder@1", "--home", built["home"])
    by_alias = as_json(capsys, "ssl-encoder@challenger", "--home", built["home"])
    assert by_alias["requested"] == "ssl-encoder@challenger" and by_alias["version"] == "1"
    assert {**by_alias, "requested": None} == {**by_version, "requested": None}


@pytest.mark.slow  # a fresh interpreter importing dagster, mlflow and torch: about 10 s on 2 cores
def test_json_is_the_only_thing_on_stdout_of_a_real_process(built):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "pipelines.cli", "lineage", "ssl-encoder@challenger", "--home",
                        str(built["home"]), "--json"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    rec = json.loads(p.stdout)  # the whole of stdout parses: no library chatter before or after
    assert (rec["model"], rec["version"], len(rec["batches"])) == ("ssl-encoder", "1", 2)


def test_an_accepted_image_by_path_and_by_sha256(built, capsys):
    h, first = built["h"], built["first"]
    sid = file_sha256(first)
    by_path = as_json(capsys, "--image", first, "--home", built["home"])
    by_sha = as_json(capsys, "--image", sid.upper(), "--home", built["home"])
    assert by_path["sample_id"] == by_sha["sample_id"] == sid and by_path["file"] == str(first)
    for rec in (by_path, by_sha):
        assert rec["found"] and rec["models"] == [{"model": "ssl-encoder", "version": "1"}]
        [acc] = [a for a in rec["accepted"]]
        assert (acc["batch"], acc["path"], acc["landing_path"]) == ("demo-001", first.name, str(first))
        assert (acc["format"], acc["width"], acc["height"]) == ("PNG", 32, 32)
        assert sid in shard_sample_ids(Path(acc["shard_path"]))  # the shard named really holds it
        assert acc["members"] == [f"{sid}.json", f"{sid}.png"] and acc["excluded"] is None
        [m] = acc["models"]
        assert (m["version"], m["trained_on_it"], m["certain"]) == ("1", "yes", True)
        assert m["index_digest_now"] == json.loads(h.shard_index_path("demo-001").read_text())["digest"]
    assert {k: v for k, v in by_path.items() if k not in ("query", "file")} == \
           {k: v for k, v in by_sha.items() if k not in ("query", "file")}
    code, out, _ = lineage(capsys, "--image", sid, "--home", built["home"])
    assert code == 0 and f"accepted in batch demo-001: {first.name}" in out
    assert "ssl-encoder@1 [challenger]: trained on it (certain)" in out
    assert "models that trained on it: ssl-encoder@1" in out


def test_a_quarantined_duplicate_leads_to_the_kept_copy_and_its_models(built, capsys):
    dup = built["h"].landing / "demo-002" / "dup.png"
    rec = as_json(capsys, "--image", dup, "--home", built["home"])
    [q] = rec["quarantined"]
    assert (q["batch"], q["path"], q["reason"]) == ("demo-002", "dup.png", "duplicate")
    assert q["duplicate_of"] == f"demo-001/{built['first'].name}"
    assert [a["batch"] for a in rec["accepted"]] == ["demo-001"]
    assert rec["models"] == [{"model": "ssl-encoder", "version": "1"}]
    code, out, _ = lineage(capsys, "--image", dup, "--home", built["home"])
    assert code == 0 and "quarantined in batch demo-002: dup.png: duplicate (duplicate of demo-001/" in out


def test_an_eval_copy_was_left_out_and_no_model_trained_on_it(built, capsys):
    rec = as_json(capsys, "--image", built["h"].landing / "demo-001" / "evalcopy.png", "--home", built["home"])
    [acc] = rec["accepted"]
    assert acc["excluded"]["reason"] == "eval_copy_exact" and acc["shard"] is None
    sid = rec["sample_id"]
    for s in json.loads(built["h"].shard_index_path("demo-001").read_text())["shards"]:
        assert sid not in shard_sample_ids(built["h"].shard_dir("demo-001") / s["name"])
    assert [m["trained_on_it"] for m in acc["models"]] == ["no"] and rec["models"] == []
    assert [e["path"] for e in rec["eval"]["accepted"]] == [f"images/{built['eval_image'].name}"]
    assert rec["eval"]["evaluated_by"] == [{"model": "ssl-encoder", "version": "1", "aliases": ["challenger"]}]
    code, out, _ = lineage(capsys, "--image", built["eval_image"], "--home", built["home"])
    assert code == 0 and "LEFT OUT OF THE SHARDS: eval_copy_exact" in out and "IN THE EVAL SET" in out
    assert "models that trained on it: none" in out


def test_an_image_in_no_batch_exits_1(built, capsys, tmp_path):
    other = tmp_path / "other.png"
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(other)
    code, out, err = lineage(capsys, "--image", other, "--home", built["home"])
    assert code == 1 and "in no batch of" in out and "no model trained on it" in out
    code, out, err = lineage(capsys, "--image", other, "--home", built["home"], "--json")
    assert code == 1 and json.loads(out)["found"] is False and "in no batch" in err


def test_hostile_file_names_are_escaped_in_text(built, capsys):
    path = built["h"].landing / "demo-001" / HOSTILE
    code, out, err = lineage(capsys, "--image", path, "--home", built["home"])
    assert code == 0 and err == ""
    assert f"accepted in batch demo-001: {terminal(HOSTILE)}" in out
    assert "\\x1b[31m" in out and "\\u202e" in out
    bad = [c for c in out + err if c not in "\n\\" and _needs_escape(c)]
    assert bad == []  # no ESC, no bidi override, no CR: nothing a terminal would obey
    rec = as_json(capsys, "--image", path, "--home", built["home"])
    assert rec["accepted"][0]["path"] == HOSTILE  # JSON keeps the value itself (json escapes the controls)


def _snapshot(home: Path) -> dict:
    return {str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(home.rglob("*")) if p.is_file()}


def test_bad_input_exits_2_and_changes_nothing(built, capsys, tmp_path):
    home = built["home"]
    before = _snapshot(home)
    cases = [["ssl-encoder"], ["@3"], ["a@b@c"], ["ssl-encoder@"], ["ssl-encoder@9"], ["ssl-encoder@nosuchalias"],
             ["nope@1"], ["--image", tmp_path / "missing.png"], ["--image", "abc123"], ["--image", "f" * 63],
             ["--image", tmp_path], [], ["ssl-encoder@1", "--image", "f" * 64]]
    for args in cases:
        for extra in ([], ["--json"]):
            code, out, err = lineage(capsys, *args, "--home", home, *extra)
            assert (code, out) == (2, ""), (args, out, err)
            assert err.startswith("sslpipe lineage: ") and err.count("\n") == 1, (args, err)
    _, _, err = lineage(capsys, "ssl-encoder@9", "--home", home)
    assert "has no version 9; versions: 1" in err
    _, _, err = lineage(capsys, "ssl-encoder@nosuchalias", "--home", home)
    assert "has no alias 'nosuchalias'; aliases: challenger -> 1" in err
    _, _, err = lineage(capsys, "nope@1", "--home", home)
    assert "unknown model 'nope'; registered models: ssl-encoder" in err
    nohome = tmp_path / "nohome"
    code, out, err = lineage(capsys, "ssl-encoder@1", "--home", nohome)
    assert (code, out) == (2, "") and "no home at" in err and not nohome.exists()
    assert _snapshot(home) == before
    assert len(built["client"].search_model_versions("name = 'ssl-encoder'")) == 1


def test_a_batch_resharded_since_training_is_said_plainly(built, capsys, tmp_path):
    """Re-sharded through the pipeline (a Dagster run with other shard settings), then by hand outside it."""
    home = tmp_path / "home"
    shutil.copytree(built["home"], home, symlinks=True)
    h = Home.resolve(home)
    old = json.loads(h.shard_index_path("demo-001").read_text())["digest"]
    cfg = tmp_path / "shards.yaml"
    cfg.write_text(json.dumps({"shards": {"max_samples": 250}}))
    assert main(["run", "--home", str(home), "--config", str(cfg), "--select", "image_shards",
                 "--batches", "demo-001"]) == 0
    new = json.loads(h.shard_index_path("demo-001").read_text())
    assert new["digest"] != old and len(new["shards"]) == 3
    rec = as_json(capsys, "ssl-encoder@1", "--home", home)
    b1, b2 = rec["batches"]
    assert (b1["status"], b1["index_digest_at_training"], b1["index_digest_now"]) == ("resharded", old, new["digest"])
    assert [s["same_as_training"] for s in b1["shards"]] == [False, None, None]
    runs = b1["image_shards_runs"]
    instance = prepare_instance(Settings.from_env(home=home))
    flt = dg.AssetRecordsFilter(asset_key=dg.AssetKey("image_shards"), asset_partitions=["demo-001"])
    newest, before = instance.fetch_materializations(flt, limit=2).records
    assert (runs["last"]["run_id"], runs["last"]["index_digest"], runs["last"]["writes_index_now"]) == \
           (newest.run_id, new["digest"], True)
    assert (runs["recorded"]["run_id"], runs["recorded"]["index_digest"]) == (before.run_id, old)
    assert b2["status"] == "unchanged" and b2["image_shards_runs"]["recorded"] is None
    code, out, _ = lineage(capsys, "ssl-encoder@1", "--home", home)
    assert code == 0 and "1 CHANGED SINCE TRAINING: demo-001" in out
    assert f"demo-001: RE-SHARDED SINCE TRAINING: index digest then {old}, now {new['digest']}" in out
    assert f"the sharding it trained on was materialized by run: {before.run_id}" in out
    img = as_json(capsys, "--image", h.batch_dir("demo-001") / built["first"].name, "--home", home)
    [m] = img["accepted"][0]["models"]
    assert (m["trained_on_it"], m["certain"], m["index_digest_at_training"]) == ("earlier_sharding", False, old)

    by_hand = shard_batch(read_manifest(h.accepted_path("demo-001")), h.batch_dir("demo-001"),
                          h.shard_dir("demo-001"), ShardConfig(max_samples=100))
    rec = as_json(capsys, "ssl-encoder@1", "--home", home)
    assert rec["batches"][0]["index_digest_now"] == by_hand.digest
    assert rec["batches"][0]["image_shards_runs"]["last"]["writes_index_now"] is False
    _, out, _ = lineage(capsys, "ssl-encoder@1", "--home", home)
    assert "(NOT the index on disk now: that run wrote index digest" in out


def test_an_image_lookup_in_a_home_without_an_mlflow_store_creates_none(built, capsys, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(built["home"], home, symlinks=True, ignore=shutil.ignore_patterns("mlflow"))
    rec = as_json(capsys, "--image", home / "landing" / "demo-001" / built["first"].name, "--home", home)
    assert rec["found"] and rec["models_searched"] == 0 and rec["models"] == []
    assert rec["accepted"][0]["shard"] == "shard-000000.tar"
    code, out, err = lineage(capsys, "ssl-encoder@1", "--home", home)
    assert (code, out) == (2, "") and "no MLflow store" in err
    assert not (home / "mlflow").exists()


TAINT = "\x1b[2J\u202e\r\nforged line\x9b31m"
ENUMS = {"status", "trained_on_it", "file"}  # values the renderer compares with fixed words: not data


def _taint(v, key=None):
    if isinstance(v, dict):
        return {(k + TAINT if key == "attributes" else k): _taint(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [_taint(x, key) for x in v]
    if isinstance(v, str) and key not in ENUMS:
        return v + TAINT
    return v


def test_every_value_from_the_data_goes_through_terminal(built, capsys):
    """The real answers with a control sequence, a bidi override and a newline appended to every string value
    (batch, path, attribute, reason, tag, alias, reviewer, run id...): the text stays on as many lines as
    before, and holds nothing a terminal would obey."""
    from pipelines.lineage_cli import image_text, model_text

    home = built["home"]
    recs = [(model_text, as_json(capsys, "ssl-encoder@1", "--home", home))]
    for p in (built["first"], built["h"].landing / "demo-002" / "dup.png", built["h"].landing / "demo-001" / "evalcopy.png"):
        recs.append((image_text, as_json(capsys, "--image", p, "--home", home)))
    for render, rec in recs:
        clean, dirty = render(rec), render(_taint(rec))
        assert len(dirty) == len(clean) and all("\n" not in line for line in dirty)
        text = "\n".join(dirty)
        assert [c for c in text if c not in "\n\\" and _needs_escape(c)] == []
        assert text.count(terminal(TAINT)) >= 5
