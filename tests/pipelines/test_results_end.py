"""The end of `sslpipe run` / `demo` (pipelines/results.py, pipelines/cli.py): the table from a real probe report,
the gate's line, the next commands exactly as they work, and the exit status of "ran fine, not promoted"
(0 with a line; 3 with --strict). The whole graph's own end is tested in tests/assets/test_registered_model.py."""

import copy
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.results import STRICT_EXIT, render_end, sslpipe_executable
from pipelines.runner import RunOutcome
from pipelines.settings import Settings
from review_data import ANSI, SCRIPT, probe_report, table

PROJECT = Path(__file__).resolve().parents[2]
HOSTILE_HOME = "home $(touch pwned) 'q' ;x"  # a folder name a shell would run, split or quote wrongly


@pytest.fixture(scope="module")
def report() -> dict:
    r = probe_report(table(1.5), table(8.0, seed=2), table(6.0, seed=3), champion=table(4.0, seed=1),
                     champion_version="2")
    r["classes"] = [SCRIPT, ANSI, "c", "d"]
    return r


def registered(passed: bool, **kw) -> dict:
    return {"model_name": "ssl-encoder", "version": "3", "gate_passed": passed, "run_key": "k3",
            "gate": "passed leakage, collapse, primary_metric (against the champion)" if passed else
            f"failed: groups: lost more than 0.05: domain{ANSI}={SCRIPT} 0.500 vs 0.900",
            "review": "pending" if passed else "gate_failed", "champion_version": "2", "reused": False, **kw}


def settings(tmp_path: Path, config: bool = True) -> Settings:
    home = tmp_path / HOSTILE_HOME
    s = Settings.from_env(home=str(home))
    if config:
        cfg = tmp_path / "my config.yaml"
        cfg.write_text("registry: {approval: human}\n")
        s = s.with_config_file(cfg)
    return s


def command(line: str, label: str) -> str:
    return line.split(label, 1)[1].strip()


def test_not_promoted_is_a_warning_and_the_next_commands_work_as_printed(tmp_path, report):
    s = settings(tmp_path)
    end = render_end(s, copy.deepcopy(report), registered(False))
    text = "\n".join(end.lines)
    assert end.not_promoted
    assert "new model: version 3 of ssl-encoder" in text and "champion (version 2)" in text
    warning = next(ln for ln in end.lines if ln.startswith("WARNING:"))
    assert "did NOT pass the gate" in warning and "groups: lost more than 0.05: domain\\x1b[31mred" in warning
    assert "\x1b" not in text
    # every command names this environment's sslpipe, the home (not the default), the config, quoted for a shell
    why = command(next(ln for ln in end.lines if "see why:" in ln), "see why:")
    argv = shlex.split(why)
    assert argv[0] == f"SSLPIPE_HOME={s.home.root}" and Path(argv[1]).is_file() and argv[1] == sslpipe_executable()
    assert argv[2:] == ["review", "ssl-encoder", "--version", "3", "--config", s.config_file]
    mlflow = command(next(ln for ln in end.lines if "training runs and registered models:" in ln),
                     "training runs and registered models:")
    m = shlex.split(mlflow)
    assert m[0] == str(Path(sys.executable).with_name("mlflow")) and Path(m[0]).is_file()
    assert m[1:] == ["ui", "--backend-store-uri", f"sqlite:///{s.home.root / 'mlflow' / 'mlflow.db'}"]
    assert ":5000" not in text and "127.0.0.1" not in text  # no port that may not be what runs
    # run as printed, in a shell, from another folder: it reaches this very home (which has no MLflow store yet)
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    env.pop("SSLPIPE_HOME", None)
    r = subprocess.run(["bash", "-c", why], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no MLflow store" in r.stderr and HOSTILE_HOME in r.stderr, r.stderr
    assert not (tmp_path / "pwned").exists()


def test_a_candidate_gets_review_and_approve_commands_and_the_default_home_no_variable(tmp_path, report,
                                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SSLPIPE_HOME", raising=False)
    s = Settings.from_env()  # ./.sslpipe: the default, so no SSLPIPE_HOME= in the commands
    end = render_end(s, copy.deepcopy(report), registered(True))
    assert not end.not_promoted
    text = "\n".join(end.lines)
    assert "GATE: passed; version 3 of ssl-encoder is the candidate" in text and "WARNING" not in text
    approve = command(next(ln for ln in end.lines if "approve it:" in ln), "approve it:")
    assert shlex.split(approve)[:4] == [sslpipe_executable(), "approve", "ssl-encoder@3", "--reason"]
    assert "SSLPIPE_HOME" not in text and "--config" not in text


def test_a_reused_encoder_still_shows_its_figures_and_says_so(tmp_path, report):
    end = render_end(settings(tmp_path, config=False), copy.deepcopy(report), registered(False, reused=True))
    text = "\n".join(end.lines)
    assert "training reused: nothing new was registered; these are the figures of version 3" in text
    assert "raw pixels" in text and "random init" in text and "new model:" not in text


@pytest.mark.parametrize("strict, code", [(False, 0), (True, STRICT_EXIT)])
def test_ran_fine_but_not_promoted_exits_0_with_a_line_or_3_with_strict(tmp_path, report, monkeypatch, capsys,
                                                                        strict, code):
    s = settings(tmp_path, config=False)
    outcome = RunOutcome("train_encoder", None, "r1", True,
                         materialized=["ssl_encoder", "probe_report", "registered_model"])
    monkeypatch.setattr("pipelines.runner.run_pipeline", lambda *a, **k: [outcome])
    monkeypatch.setattr("pipelines.results.end_of_run",
                        lambda s_, outcomes: render_end(s_, copy.deepcopy(report), registered(False)))
    assert main(["run", "--home", str(s.home.root)] + (["--strict"] if strict else [])) == code
    out = capsys.readouterr().out
    assert "WARNING: version 3 of ssl-encoder did NOT pass the gate" in out
    if strict:
        assert out.rstrip().endswith("exit status 3 (--strict): the run went well but version 3 was not promoted")
    else:
        assert out.rstrip().endswith("exit status 0: the run went well, but version 3 was not promoted "
                                     "(with --strict this exits 3)")
    # a promoted version exits 0 under --strict too
    monkeypatch.setattr("pipelines.results.end_of_run",
                        lambda s_, outcomes: render_end(s_, copy.deepcopy(report), registered(True)))
    assert main(["run", "--home", str(s.home.root), "--strict"]) == 0


@pytest.mark.parametrize("strict", [False, True])
def test_a_run_that_ended_without_success_or_error_exits_1_with_a_failed_line(tmp_path, report, monkeypatch, capsys,
                                                                              strict):
    """A run killed from outside (the OOM killer, a terminated run worker) ends with success False and no step
    error: it is a failure (exit 1, FAILED on stderr naming the run), never "ran fine", with or without --strict,
    even when an earlier run of the same command registered a model and the table is printed."""
    s = settings(tmp_path, config=False)
    ok = RunOutcome("ingest_batch", "b1", "r0", True, materialized=["ingested_images"])
    killed = RunOutcome("train_encoder", None, "r-killed", False, materialized=["ssl_encoder"])
    monkeypatch.setattr("pipelines.runner.run_pipeline", lambda *a, **k: [ok, killed])
    monkeypatch.setattr("pipelines.results.end_of_run",
                        lambda s_, outcomes: render_end(s_, copy.deepcopy(report), registered(True)))
    assert main(["run", "--home", str(s.home.root)] + (["--strict"] if strict else [])) == 1
    captured = capsys.readouterr()
    failed = [ln for ln in captured.err.splitlines() if ln.startswith("FAILED:")]
    assert failed == ["FAILED: train_encoder (global): the run did not succeed (killed or terminated?); "
                      "see run r-killed in the UI"]
    assert "exit status 0" not in captured.out and "exit status 3" not in captured.out


def test_strict_is_documented_in_the_help(capsys):
    for cmd in ("run", "demo"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        out = capsys.readouterr().out
        assert "--strict" in out and "3  only with --strict" in out and "not promoted" in out
