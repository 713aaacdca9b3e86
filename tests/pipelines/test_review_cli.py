"""`sslpipe review`, `approve`, `reject`, `rollback` on a real SQLite MLflow store and a real Dagster instance.

The versions are registered directly through the real MLflow client, with what registered_model writes that
review reads: the run's `evaluation/probe_report.json` (real probe tables, tests/review_data.py), the version
tags `sslpipe.batches`, `sslpipe.run_key`, `sslpipe.method`, `sslpipe.backbone`, `sslpipe.git_sha`,
`sslpipe.gate` (passed/summary/metric/against/checks, set last) and `sslpipe.review`, and the aliases and review
states set through Registry exactly as registered_model sets them (challenger; candidate + pending when the gate
passed; gate_failed otherwise); the first champion through Registry.approve. The home holds a real bias.json
(BiasReport.to_dict) for the one batch the candidate trained on that the champion did not.

The template (built once per module):
    v1  champion (approved by alice), gate passed against the baselines, batches b1, b2
    v2  gate FAILED against the champion (primary_metric), batches b1, b2
    v3  candidate, pending, gate passed against the champion (probed with it on the same split),
        batches b1, b2 and HOSTILE_BATCH (markup and ANSI in its name; its bias report has hostile group values)
Each test works on its own copy of the home (MLflow database and Dagster instance), so tests may change it.

The real graph end to end (train, register, review, approve) is test_review_after_the_real_graph (slow).
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from assets.mlflow_registry import GATE_TAG, REVIEW_TAG, RUN_KEY_TAG, Registry
from assets.mlflow_tracking import MlflowTracking
from pipelines.cli import main
from pipelines.settings import Settings, prepare_instance
from review_data import HOSTILE_BATCH, SCRIPT, bias_json, probe_report, table

MODEL = "ssl-encoder"
PROJECT = Path(__file__).resolve().parents[2]


def tracking(home: Path) -> MlflowTracking:
    return MlflowTracking(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
                          artifact_root=str(home / "mlflow" / "artifacts"), model_name=MODEL)


def gate_tag(passed: bool, against: str, checks: list[tuple[str, bool, str]]) -> str:
    failed = [f"{n}: {d}" for n, ok, d in checks if not ok]
    summary = (f"passed {', '.join(n for n, _, _ in checks)} (against the {against})" if passed
               else "failed: " + "; ".join(failed))
    return json.dumps({"passed": passed, "summary": summary, "metric": "linear", "against": against,
                       "checks": [{"name": n, "passed": ok, "detail": d} for n, ok, d in checks]})


def register(reg: Registry, exp_id: str, report: dict, batches: list[str], gate: str, n: int) -> str:
    c = reg.client
    run = c.create_run(exp_id, run_name=f"ssl_encoder {n}")
    rid = run.info.run_id
    c.log_dict(rid, report, "evaluation/probe_report.json")
    c.set_terminated(rid)
    reg.ensure()
    tags = {RUN_KEY_TAG: f"key{n}", "sslpipe.batches": ",".join(batches), "sslpipe.method": "simclr",
            "sslpipe.backbone": "resnet18", "sslpipe.git_sha": "abc123", "dagster.run_id": f"run{n}"}
    mv = c.create_model_version(MODEL, source=f"{run.info.artifact_uri}/encoder_model", run_id=rid, tags=tags)
    v = str(mv.version)
    reg.move_alias("challenger", v, f"registered by Dagster run run{n}", f"run{n}")
    g = json.loads(gate)
    if g["passed"]:
        reg.move_alias("candidate", v, f"the gate passed: {g['summary']}", f"run{n}", action="gate")
        reg.set_review_state(v, "pending", None, f"the gate passed: {g['summary']}")
    else:
        reg.set_review_state(v, "gate_failed", None, g["summary"])
    c.set_model_version_tag(MODEL, v, GATE_TAG, gate)
    return v


@pytest.fixture(scope="module")
def tables():
    return {"good": table(1.5), "champ": table(4.0, seed=1), "base": table(8.0, seed=2)}


@pytest.fixture(scope="module")
def template(tmp_path_factory, tables):
    home = tmp_path_factory.mktemp("review") / "home"
    (home / "mlflow").mkdir(parents=True)
    t = tracking(home)
    reg = Registry(t)
    exp = t.experiment_id(reg.client)
    good, champ, base = tables["good"], tables["champ"], tables["base"]
    ok = [("leakage", True, "no eval image in the shards"), ("collapse", True, "embedding std 0.800 >= 0.1")]
    v1 = register(reg, exp, probe_report(champ, base, base), ["b1", "b2"],
                  gate_tag(True, "baselines", ok + [("baselines", True, "linear beats raw pixels and random init")]), 1)
    reg.approve(v1, "alice", "the first champion: beats both baselines")
    register(reg, exp, probe_report(base, base, base, champion=champ, champion_version="1"), ["b1", "b2"],
             gate_tag(False, "champion", ok + [("primary_metric", False, "linear 0.55 vs champion 0.97: "
                                                                         "wholly below -0.01")]), 2)
    register(reg, exp, probe_report(good, base, base, champion=champ, champion_version="1"),
             ["b1", "b2", HOSTILE_BATCH],
             gate_tag(True, "champion", ok + [("primary_metric", True, f"detail naming {SCRIPT}")]), 3)
    rep = home / "reports" / HOSTILE_BATCH
    rep.mkdir(parents=True)
    (rep / "bias.json").write_text(json.dumps(bias_json(HOSTILE_BATCH)))
    yield home


@pytest.fixture
def home(template, tmp_path) -> Path:
    """A copy of the template home (its artifacts stay in the template's folder, where the runs point)."""
    dst = tmp_path / "home"
    shutil.copytree(template, dst)
    return dst


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def registry(home: Path) -> Registry:
    return Registry(tracking(home))


def snapshot(home: Path) -> dict:
    """Everything a decision may change: aliases, alias history, each version's tags, Dagster observations."""
    reg = registry(home)
    return {"aliases": {k: str(v) for k, v in reg.client.get_registered_model(MODEL).aliases.items()},
            "history": reg.history(),
            "tags": {str(v.version): dict(v.tags) for v in reg.client.search_model_versions(f"name = '{MODEL}'")},
            "observations": len(observations(home))}


def observations(home: Path) -> list[dict]:
    inst = prepare_instance(Settings.from_env(home=home))
    recs = inst.fetch_observations(dg.AssetKey("registered_model"), limit=10).records
    return [{k: v.value for k, v in r.asset_observation.metadata.items()} for r in recs]


def aliases(home: Path) -> dict:
    return {k: str(v) for k, v in registry(home).client.get_registered_model(MODEL).aliases.items()}


def review_state(home: Path, v: str) -> dict:
    return json.loads(registry(home).client.get_model_version(MODEL, v).tags[REVIEW_TAG])


def printed(out: str, what: str) -> list[str]:
    """The argv of the command printed after `what` in the NEXT section, as a shell would split it."""
    line = next(x for x in out.splitlines() if x.strip().startswith(what + " "))
    argv = shlex.split(line.strip()[len(what):].split("  #")[0])
    assert argv[0] == "sslpipe"
    return argv[1:]


# --------------------------------------------------------------------------------------------------- review
def test_review_text_shows_the_candidate_beside_the_champion_with_escaped_data(home, capsys, tables):
    code, out, err = cli(capsys, "review", "--home", str(home))
    assert code == 0, err
    assert "reviewing version 3 (candidate) beside the champion, version 1" in out
    good, champ = tables["good"], tables["champ"]
    row3 = next(x for x in out.splitlines() if x.strip().startswith("version 3 (candidate)"))
    row1 = next(x for x in out.splitlines() if x.strip().startswith("version 1 (champion, same split)"))
    for row, t in ((row3, good), (row1, champ)):
        for m in ("knn20", "knn200", "linear"):
            lo, hi = t[f"{m}_ci"]
            assert f"{100 * t[m]:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" in row, (m, row)
        assert f"{100 * t['label_fractions']['0.1']['mean']:.1f}" in row
    assert f"linear: {100 * (good['linear'] - champ['linear']):+.1f} points against the champion" in out
    assert "raw pixels" in out and "random init" in out
    # per group: the hostile values, escaped
    col = next(iter(good["groups"]))
    gap = good["groups"][col]["worst_group_gap"]
    assert f"gap {100 * gap:.1f} points" in out
    assert "domain\\x1b[31mred\\x1b[0m: worst group" in out and "<script>alert(1)</script>" in out
    assert "GATE PASSED against the champion on linear" in out and "pass primary_metric: detail naming" in out
    assert "REVIEW STATE  pending" in out
    # bias findings of the one new batch, escaped, with its real figures
    assert "batch b3<img src=x onerror=alert(1)>\\x1b[2J (40 images; flagged: group_representation, image_drift, " \
           "near_duplicates)" in out
    assert "group domain\\x1b[31mred\\x1b[0m:" in out and "under 10%: <script>alert(1)</script>" in out
    assert "brightness psi=" in out and "4 near copies of earlier batches" in out
    assert "\x1b" not in out and "\x1b" not in err  # no raw ESC anywhere
    assert "approve   sslpipe approve ssl-encoder@3 --reason" in out and "--force" not in printed(out, "approve")


def test_review_json_is_json_alone_with_the_figures(home, capsys, tables):
    code, out, err = cli(capsys, "review", MODEL, "--home", str(home), "--json")
    assert code == 0, err
    d = json.loads(out)  # stdout holds the JSON and nothing else
    assert d["subject"]["version"] == "3" and d["subject"]["role"] == "candidate" and d["champion"]["version"] == "1"
    assert d["same_split"] and d["gate"]["passed"] and d["review"]["status"] == "pending"
    good, champ = tables["good"], tables["champ"]
    assert d["deltas"]["linear"]["delta"] == pytest.approx(good["linear"] - champ["linear"])
    lo, hi = d["deltas"]["linear"]["ci"]
    assert lo <= d["deltas"]["linear"]["delta"] <= hi
    probes = {p["key"]: p for p in d["probes"]}
    assert probes["subject"]["linear_ci"] == list(good["linear_ci"]) and probes["champion"]["knn200"] == champ["knn200"]
    assert d["new_batches"] == [HOSTILE_BATCH]  # raw in JSON: escaping is the reader's job, and JSON escapes ESC
    b = d["bias"][0]
    assert b["groups"][0]["under"] == [SCRIPT] and b["near_duplicates"]["cross_batch_count"] == 4
    assert [x["feature"] for x in b["drifted"]] == ["brightness"]
    assert "\x1b" not in out  # json.dumps writes \u001b
    assert d["commands"]["approve"].startswith("sslpipe approve ssl-encoder@3 ")


def test_review_html_is_one_escaped_page_that_renders_in_chromium(home, capsys, tmp_path):
    page = tmp_path / "review.html"
    code, out, err = cli(capsys, "review", "--home", str(home), "--html", str(page))
    assert code == 0, err
    html = page.read_text()
    low = html.lower()
    assert "<script" not in low and "onerror=" not in low.replace("onerror=alert(1)&gt;", "")
    assert "<img src=x" not in low and "\x1b" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "b3&lt;img src=x onerror=alert(1)&gt;\\x1b[2J" in html
    assert html.count('src="data:image/png;base64,') >= 1  # no run plots logged here: drawn from the report
    assert "http://" not in html and "https://" not in html and "<link" not in low  # self-contained
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("no headless Chromium on this machine")
    shot = tmp_path / "review.png"
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                        "--window-size=1280,2400", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file(), r.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("RGB"))
    assert px.shape[:2] == (2400, 1280)
    assert px.std() > 20 and len(np.unique(px.reshape(-1, 3), axis=0)) > 200  # text, tables, a plot: not blank
    top = px[:400]  # the title and gate table are drawn at the top, not a blank or error page
    assert (top < 100).all(axis=2).sum() > 2000
    if os.environ.get("REVIEW_SHOT_COPY"):  # a path: keep the screenshot there for a person to look at
        shutil.copy(shot, os.environ["REVIEW_SHOT_COPY"])


def test_no_candidate_shows_the_champion_alone_and_exits_0(home, capsys):
    reg = registry(home)
    reg.move_alias("candidate", None, "test: no candidate", None)
    code, out, err = cli(capsys, "review", "--home", str(home))
    assert code == 0, err
    assert "no candidate: no version is waiting for review; the champion is version 1" in out
    assert "version 1 (champion)" in out and "approve " not in out


# --------------------------------------------------------------------------------------------------- approve
def test_the_printed_approve_works_as_printed_then_approving_again_is_refused_and_changes_nothing(home, capsys):
    code, out, _ = cli(capsys, "review", "--home", str(home))
    code, out, err = cli(capsys, *printed(out, "approve"))
    assert code == 0, err
    assert aliases(home) == {"champion": "3", "challenger": "3"}  # candidate removed: it pointed at 3
    last = registry(home).history()[-2:]
    assert [(h["alias"], h["from_version"], h["to_version"], h["action"]) for h in last] == [
        ("champion", "1", "3", "approve"), ("candidate", "3", None, "approve")]
    assert last[0]["reviewer"] == getpass.getuser() and last[0]["reason"].startswith("reviewed:")
    state = review_state(home, "3")
    assert state["status"] == "approved" and state["reviewer"] == getpass.getuser() and not state["forced"]
    assert (state["from_version"], state["to_version"]) == ("1", "3")
    obs = observations(home)
    assert len(obs) == 1 and {k: obs[0][k] for k in ("action", "model", "version", "from", "to", "reviewer")} == {
        "action": "approve", "model": MODEL, "version": "3", "from": "1", "to": "3", "reviewer": getpass.getuser()}
    assert obs[0]["reason"] == last[0]["reason"] and obs[0]["time"] == last[0]["time"] and obs[0]["forced"] is False

    before = snapshot(home)
    code, out, err = cli(capsys, "approve", f"{MODEL}@3", "--reason", "again", "--home", str(home))
    assert code == 1 and "already the champion" in err
    assert snapshot(home) == before


def test_a_gate_failed_version_needs_force_and_the_approval_is_recorded_as_forced(home, capsys):
    before = snapshot(home)
    code, out, err = cli(capsys, "approve", f"{MODEL}@2", "--reason", "we need it", "--reviewer", "bob",
                         "--home", str(home))
    assert code == 1 and "failed its gate" in err and "--force" in err
    assert snapshot(home) == before
    code, out, err = cli(capsys, "review", "--home", str(home), "--version", "2")
    assert "GATE FAILED" in out and "FAIL primary_metric" in out
    assert "--force" in printed(out, "approve")  # the printed command carries --force, and works as printed
    code, out, err = cli(capsys, *printed(out, "approve"))
    assert code == 0, err
    assert "FORCED" in out
    h = registry(home).history()[-1]
    assert (h["alias"], h["from_version"], h["to_version"], h["action"], h["forced"]) == ("champion", "1", "2", "approve", True)
    assert review_state(home, "2")["forced"] is True
    assert observations(home)[0]["forced"] is True and observations(home)[0]["gate_passed"] is False
    assert aliases(home)["candidate"] == "3"  # the candidate stays: it pointed elsewhere


# --------------------------------------------------------------------------------------------------- reject
def test_reject_removes_the_candidate_and_refuses_the_champion(home, capsys):
    before = snapshot(home)
    code, out, err = cli(capsys, "reject", f"{MODEL}@1", "--reason", "old", "--reviewer", "bob", "--home", str(home))
    assert code == 1 and "use `sslpipe rollback" in err
    assert snapshot(home) == before
    code, out, _ = cli(capsys, "review", "--home", str(home))
    argv = printed(out, "reject")
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", *argv], capture_output=True, text=True, timeout=300,
                          cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert aliases(home) == {"champion": "1", "challenger": "3"}
    h = registry(home).history()[-1]
    assert (h["alias"], h["from_version"], h["to_version"], h["action"]) == ("candidate", "3", None, "reject")
    state = review_state(home, "3")
    assert state["status"] == "rejected" and state["reason"] == "not good enough: say why"
    assert observations(home)[0]["action"] == "reject" and observations(home)[0]["version"] == "3"
    before = snapshot(home)
    assert cli(capsys, "reject", f"{MODEL}@3", "--reason", "twice", "--home", str(home))[0] == 1
    code, out, err = cli(capsys, "approve", f"{MODEL}@3", "--reason", "changed my mind", "--home", str(home))
    assert code == 1 and "was rejected by" in err and "--force" in err
    assert snapshot(home) == before


# --------------------------------------------------------------------------------------------------- rollback
def test_rollback_needs_an_earlier_champion_and_goes_back_to_it(home, capsys):
    before = snapshot(home)
    code, out, err = cli(capsys, "rollback", MODEL, "--reason", "bad", "--home", str(home))
    assert code == 1 and "no earlier champion" in err
    assert snapshot(home) == before
    assert cli(capsys, "approve", f"{MODEL}@3", "--reason", "better", "--reviewer", "ana", "--home", str(home))[0] == 0
    code, out, _ = cli(capsys, "review", "--home", str(home), "--version", "3")  # the champion: shown alone
    assert "rollback  sslpipe rollback ssl-encoder --reason" in out and "# champion 3 -> 1" in out
    code, out, err = cli(capsys, *printed(out, "rollback"))
    assert code == 0, err
    assert aliases(home)["champion"] == "1"
    h = registry(home).history()[-1]
    assert (h["alias"], h["from_version"], h["to_version"], h["action"], h["reviewer"]) == (
        "champion", "3", "1", "rollback", getpass.getuser())
    assert review_state(home, "3")["status"] == "rolled_back" and review_state(home, "1")["action"] == "rollback"
    o = observations(home)[0]
    assert (o["action"], o["from"], o["to"], o["reason"]) == ("rollback", "3", "1", "say why")
    before = snapshot(home)
    code, out, err = cli(capsys, "rollback", MODEL, "--reason", "again", "--home", str(home))
    assert code == 1 and "no earlier champion" in err  # 3 was rolled back from: it is not an earlier champion to go to
    assert snapshot(home) == before


def test_rollback_to_a_named_earlier_champion(home, capsys):
    for v, extra in (("3", []), ("2", ["--force"])):
        assert cli(capsys, "approve", f"{MODEL}@{v}", "--reason", "r", "--reviewer", "ana", *extra,
                   "--home", str(home))[0] == 0
    assert registry(home).champion_line() == ["1", "3", "2"] and registry(home).previous_champion() == "3"
    before = snapshot(home)
    for to, code_, why in (("2", 1, "already the champion"), ("9", 2, "has no version '9'")):
        code, out, err = cli(capsys, "rollback", MODEL, "--to", to, "--reason", "r", "--home", str(home))
        assert code == code_ and why in err, err
    assert snapshot(home) == before
    code, out, err = cli(capsys, "rollback", MODEL, "--to", "1", "--reason", "back to the first", "--reviewer", "ana",
                         "--home", str(home))
    assert code == 0, err
    assert aliases(home)["champion"] == "1" and registry(home).champion_line() == ["1"]
    h = registry(home).history()[-1]
    assert (h["from_version"], h["to_version"], h["reason"], h["reviewer"]) == ("2", "1", "back to the first", "ana")


def test_rollback_to_a_version_that_never_was_champion_is_refused(home, capsys):
    before = snapshot(home)
    code, out, err = cli(capsys, "rollback", MODEL, "--to", "3", "--reason", "r", "--home", str(home))
    assert code == 1 and "was never the champion" in err
    assert snapshot(home) == before


# --------------------------------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("argv, why", [
    (["review", "nosuch-model"], "no registered model 'nosuch-model'"),
    (["review", "--version", "9"], "has no version '9'"),
    (["approve", "nosuch-model@1", "--reason", "r"], "no registered model 'nosuch-model'"),
    (["approve", f"{MODEL}@9", "--reason", "r"], "has no version '9'"),
    (["approve", MODEL, "--reason", "r"], "is not MODEL@VERSION"),
    (["approve", f"{MODEL}@3", "--reason", "   "], "the reason is empty"),
    (["approve", f"{MODEL}@3", "--reason", "r", "--reviewer", "evil\x1b[31m"], "control or format characters"),
    (["approve", f"{MODEL}@3", "--reason", "r", "--reviewer", "ana\u202egnp"], "control or format characters"),
    (["approve", f"{MODEL}@3", "--reason", "r", "--reviewer", ""], "the reviewer name is empty"),
    (["reject", f"{MODEL}@3", "--reason", "r", "--reviewer", "a\nb"], "control or format characters"),
    (["rollback", "nosuch-model", "--reason", "r"], "no registered model 'nosuch-model'"),
    (["rollback", MODEL, "--to", "x", "--reason", "r"], "a version number is expected"),
])
def test_bad_arguments_exit_2_and_change_nothing(home, capsys, argv, why):
    before = snapshot(home)
    code, out, err = cli(capsys, *argv, "--home", str(home))
    assert code == 2 and why in err, err
    assert "\x1b" not in err and "\u202e" not in err and out == ""
    assert snapshot(home) == before


def test_a_missing_reason_is_an_argument_error_and_a_home_without_a_store_is_too(home, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["approve", f"{MODEL}@3", "--home", str(home)])
    assert e.value.code == 2
    code, out, err = cli(capsys, "review", "--home", str(tmp_path / "nowhere"))
    assert code == 2 and "no MLflow store" in err and not (tmp_path / "nowhere").exists()


# --------------------------------------------------------------------------------------------------- the real graph
@pytest.mark.slow
def test_review_after_the_real_graph(tmp_path, capsys):
    """The real graph twice on the demo digits (3 then 4 training steps, human approval, the gate's tolerance
    1.0): version 1 fails its gate against the baselines, is approved with --force; version 2 is no worse than
    that champion (primary_metric passes) but, like it, loses to raw pixels: with a champion in place the
    baselines still hold it back; review reads what registered_model wrote (plots, gate checks, what the
    intervals cover); the printed approve (with --force) works. About 2 minutes on 2 cores."""
    from ssl_ops.demo_data import write_demo
    from ssl_ops.home import Home

    home = tmp_path / "home"
    write_demo(Home.resolve(home).ensure())
    cfgs = []
    for steps in (3, 4):
        cfg = tmp_path / f"c{steps}.yaml"
        cfg.write_text(json.dumps({"workers": 1, "registry": {"approval": "human", "tolerance": 1.0,
                                                             "min_embedding_std": 0},
                                   "train": {"method": "simclr", "backbone": "resnet18", "width": 8, "image_size": 16,
                                             "batch_size": 32, "steps": steps, "warmup_steps": 1, "workers": 0,
                                             "checkpoint_every": 0, "health_every": 1}}))
        cfgs.append(cfg)
    assert main(["run", "--home", str(home), "--config", str(cfgs[0])]) == 0
    capsys.readouterr()
    code, out, err = cli(capsys, "review", "--home", str(home), "--version", "1")
    assert code == 0 and "GATE FAILED against the baselines" in out and "FAIL baselines" in out
    assert cli(capsys, *printed(out, "approve"))[0] == 0  # carries --force
    assert main(["run", "--home", str(home), "--config", str(cfgs[1])]) == 0
    capsys.readouterr()
    page = tmp_path / "r.html"
    code, out, err = cli(capsys, "review", "--home", str(home), "--config", str(cfgs[1]), "--version", "2",
                         "--html", str(page))
    assert code == 0 and "reviewing version 2 (challenger) beside the champion, version 1" in out, out
    assert "version 1 (champion, same split)" in out and "GATE FAILED against the champion" in out
    assert "pass primary_metric: linear" in out and "FAIL baselines: linear" in out and "does not beat raw pixels" in out
    assert "do not cover training-seed variance" in " ".join(out.split()) and "bench/seed_spread.py" in out
    html = page.read_text()
    assert html.count("data:image/png;base64,") >= 4  # the runs' own plots
    assert "do not cover training-seed variance" in html
    code, out, err = cli(capsys, *printed(out, "approve"))
    assert code == 0 and aliases(home) == {"champion": "2", "challenger": "2"}
    assert [o["action"] for o in observations(home)] == ["approve", "approve"]
