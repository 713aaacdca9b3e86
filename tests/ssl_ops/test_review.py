"""The champion/challenger gate, the paired bootstrap it reads, the model card and the plots, on real probe
tables built from blobs (ssl_ops.probes.probe_features) so that every figure is a real probe's."""

import io

import numpy as np
import pytest

from ssl_ops.escape import md_code, md_text
from ssl_ops.probes import paired_bootstrap_ci, probe_features, probe_split
from ssl_ops.review import GateConfig, decide, model_card
from ssl_ops.review.plots import label_fraction_curve, projection_plot, training_curves

LEAK_OK = (True, "no eval image in a shard")
HEALTHY = {"embedding_std": 0.8, "effective_rank": 30.0, "uniformity": -2.0, "alignment": 0.4}


def blobs(spread, n=400, d=16, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n // classes)
    centres = np.random.default_rng(99).normal(size=(classes, d)) * 3
    return centres[y] + rng.normal(size=(n, d)) * spread, y


def table(spread, groups=None, seed=0):
    x, y = blobs(spread, seed=seed)
    return probe_features(x, y, probe_split(y, 0.3, 0), groups=groups, draws=2)


def report(model, raw, rnd, champion=None, health=HEALTHY):
    r = {"model": model, "raw_pixels": raw, "random_init": rnd, "health": dict(health), "classes": list("abcd"),
         "split": {"seed": 0, "test_fraction": 0.3, "n_train": 280, "n_test": 120}}
    if champion is not None:
        r["champion"] = champion
    return r


GOOD, OK, BAD = table(1.0), table(2.5), table(12.0)


def test_paired_interval_is_the_difference_of_means_and_narrower_than_unpaired():
    rng = np.random.default_rng(0)
    a = (rng.random(300) < 0.8).astype(int)
    b = a.copy()
    flip = rng.choice(300, 15, replace=False)
    b[flip] = 1 - b[flip]
    lo, hi = paired_bootstrap_ci(a, b)
    d = a.mean() - b.mean()
    assert lo <= d <= hi and hi - lo < 0.06  # the rows both get right cancel
    assert paired_bootstrap_ci(a, a) == (0.0, 0.0)
    with pytest.raises(ValueError, match="same split"):
        paired_bootstrap_ci(a, b[:-1])


def test_first_model_is_promoted_only_when_it_beats_both_baselines():
    assert GOOD["linear"] > OK["linear"] > BAD["linear"]
    d = decide(report(GOOD, raw=OK, rnd=BAD), GateConfig(), "simclr", LEAK_OK)
    assert d.passed and d.against == "baselines" and [c["name"] for c in d.checks] == ["leakage", "collapse", "baselines"]
    assert d.summary == "passed leakage, collapse, baselines (against the baselines)"
    d = decide(report(OK, raw=GOOD, rnd=BAD), GateConfig(), "simclr", LEAK_OK)
    assert not d.passed and d.summary.startswith("failed: baselines:") and "raw pixels" in d.summary
    assert d.to_dict()["summary"] == d.summary and "leakage" not in d.summary  # only the failed checks are named


def test_a_clearly_worse_challenger_is_refused_and_an_equal_one_passes():
    worse = decide(report(BAD, OK, BAD, champion=GOOD), GateConfig(), "simclr", LEAK_OK)
    assert not worse.passed and worse.against == "champion"
    (c,) = worse.failed
    assert c["name"] == "primary_metric" and c["delta_ci"][1] < -0.01 and "vs champion" in c["detail"]
    same = decide(report(GOOD, OK, BAD, champion=GOOD), GateConfig(), "simclr", LEAK_OK)
    assert same.passed and same.checks[-1]["delta"] == 0
    better = decide(report(GOOD, OK, BAD, champion=OK), GateConfig(), "simclr", LEAK_OK)
    assert better.passed and better.checks[-1]["delta"] > 0


def test_the_tolerance_is_interval_aware():
    """A small loss whose interval reaches back above -tolerance passes; a huge tolerance lets anything through."""
    slightly = table(1.3, seed=5)
    d = decide(report(slightly, OK, BAD, champion=GOOD), GateConfig(tolerance=0.01), "simclr", LEAK_OK)
    lo, hi = d.checks[-1]["delta_ci"]
    assert d.passed == (hi >= -0.01)
    assert decide(report(BAD, OK, BAD, champion=GOOD), GateConfig(tolerance=1.0), "simclr", LEAK_OK).passed


def test_a_group_that_regresses_blocks_promotion():
    g = {"domain": np.array(["photo", "sketch"] * 200, dtype=object)}
    champ = table(1.0, groups=g)
    model = table(1.0, groups=g)
    model["groups"]["domain"]["per_group"]["sketch"]["accuracy"] -= 0.2  # one domain collapses
    d = decide(report(model, OK, BAD, champion=champ), GateConfig(group_tolerance=0.05), "simclr", LEAK_OK)
    assert not d.passed and [c["name"] for c in d.failed] == ["groups"] and "domain=sketch" in d.summary


def test_collapse_and_leakage_each_block_promotion_with_their_reason():
    d = decide(report(GOOD, OK, BAD, health={**HEALTHY, "embedding_std": 0.01}), GateConfig(), "simclr", LEAK_OK)
    assert [c["name"] for c in d.failed] == ["collapse"] and "0.010 < 0.1" in d.summary
    d = decide(report(GOOD, OK, BAD), GateConfig(), "simclr", (False, "3 eval images in shards"))
    assert [c["name"] for c in d.failed] == ["leakage"] and "3 eval images" in d.summary


def test_mae_is_judged_on_the_linear_probe_whatever_the_primary_metric():
    d = decide(report(GOOD, OK, BAD), GateConfig(primary_metric="knn20"), "mae", LEAK_OK)
    assert d.metric == "linear" and d.notes and "linear probe" in d.notes[0]
    assert decide(report(GOOD, OK, BAD), GateConfig(primary_metric="knn20"), "simclr", LEAK_OK).metric == "knn20"


@pytest.mark.parametrize("bad", [{"primary_metric": "f1"}, {"tolerance": -0.1}, {"group_tolerance": "a"}])
def test_gate_config_refuses_nonsense(bad):
    with pytest.raises(ValueError, match="gate"):
        GateConfig(**bad)


def test_model_card_holds_the_decision_tables_and_lineage():
    g = {"domain": np.array(["photo", "sketch"] * 200, dtype=object)}
    r = report(table(12.0, groups=g), OK, BAD, champion=table(1.0, groups=g))
    d = decide(r, GateConfig(), "simclr", LEAK_OK)
    lineage = {"batches": ["b1"], "shard_index_digests": {"b1": "ab" * 32}, "manifest_digests": {"b1": "cd" * 32},
               "contracts": {"b1": "unlabeled_images@1.0.0"}, "eval_digest": "ef" * 32, "git_sha": "123abc",
               "dagster_run_id": "run-1", "run_key": "key-1", "mlflow_run_id": "mlrun"}
    training = {"samples": 400, "steps": 1, "images_seen": 32, "final_loss": 5.0, "images_per_s": 100.0,
                "device": "cpu", "world": 1, "wall_s": 3.0}
    cfg = {"method": "simclr", "backbone": "resnet18", "width": 8, "image_size": 32, "batch_size": 32}
    card = model_card("ssl-encoder", "2", r, d, training, cfg, lineage, champion_version="1")
    assert "**not promoted**" in card and d.failed[0]["detail"] in card and "(version 1)" in card
    assert "| this model |" in card and "| champion |" in card and "| raw pixels |" in card
    assert "**domain**" in card and "| sketch |" in card
    assert "abababababababab" in card and "unlabeled_images@1.0.0" in card and "123abc" in card
    assert 'mlflow.pyfunc.load_model("models:/ssl-encoder/2")' in card
    assert "## Gate decision: **not promoted** (stays challenger)" in card
    assert d.summary.startswith("failed: primary_metric: ")
    assert f"Against the champion (version 1), on {md_code('linear')}: {md_text(d.summary)}\n" in card


def test_model_card_verdict_follows_the_registry_approval_mode():
    """A passing version is the candidate (champion once a reviewer approves) unless registry.approval is auto."""
    r = report(GOOD, OK, BAD)
    d = decide(r, GateConfig(), "simclr", LEAK_OK)
    assert d.passed
    lineage = {"batches": ["b1"], "shard_index_digests": {"b1": "ab" * 32}, "manifest_digests": {"b1": "cd" * 32},
               "contracts": {"b1": "unlabeled_images@1.0.0"}, "eval_digest": "ef" * 32, "git_sha": "123abc",
               "dagster_run_id": "run-1", "run_key": "key-1", "mlflow_run_id": "mlrun"}
    training = {"samples": 400, "steps": 1, "images_seen": 32, "final_loss": 5.0, "images_per_s": 100.0,
                "device": "cpu", "world": 1, "wall_s": 3.0}
    cfg = {"method": "simclr", "backbone": "resnet18", "width": 8, "image_size": 32, "batch_size": 32}
    human = model_card("ssl-encoder", "3", r, d, training, cfg, lineage)  # approval defaults to human
    assert ("## Gate decision: **passed: candidate**, champion once a reviewer approves it "
            "(`sslpipe approve ssl-encoder@3`)") in human
    assert "promoted to champion" not in human and "not promoted" not in human
    assert f"on {md_code('linear')}: passed leakage, collapse, baselines (against the baselines)\n" in human
    auto = model_card("ssl-encoder", "3", r, d, training, cfg, lineage, approval="auto")
    assert "## Gate decision: **passed: promoted to champion** (registry.approval: auto, no reviewer)" in auto
    assert "sslpipe approve" not in auto and "candidate" not in auto


def test_plots_render_to_png():
    r = report(GOOD, OK, BAD, champion=OK)
    r["projection"] = {"x": [0.0, 1.0, 2.0], "y": [1.0, 0.0, 2.0], "label": [0, 1, 2]}
    rows = [{"step": s, "loss": 5.0 - s / 10, "lr": 0.001 * s} for s in range(20)]
    for fig in (training_curves(rows), label_fraction_curve(r), projection_plot(r)):
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n" and len(buf.getvalue()) > 5000
    ax = label_fraction_curve(r).axes[0]
    assert len(ax.get_lines()) >= 4  # model, champion, random init, raw pixels
