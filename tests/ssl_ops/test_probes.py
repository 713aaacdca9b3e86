"""Probes: stratified seeded splits, the linear probe's standardisation and C choice, label fractions,
bootstrap intervals, per-group accuracy, alignment and uniformity against their formulas, and real PACS."""

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from imagefiles import need_shared
from ssl_ops.probes import (alignment, bootstrap_ci, label_subset, linear_probe, per_group_accuracy,
                            probe_features, probe_split, uniformity, worst_group_gap)


def blobs(n=600, d=16, classes=4, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, d)) * 3
    return centres[y] + rng.normal(size=(n, d)) * spread, y


def test_the_split_is_stratified_seeded_and_disjoint():
    y = np.repeat(np.arange(3), [50, 30, 20])
    tr, te = probe_split(y, 0.3, seed=1)
    assert set(tr).isdisjoint(te) and len(tr) + len(te) == 100
    assert [int((y[te] == c).sum()) for c in range(3)] == [15, 9, 6]
    assert np.array_equal(te, probe_split(y, 0.3, seed=1)[1])
    assert not np.array_equal(te, probe_split(y, 0.3, seed=2)[1])
    few = label_subset(tr, y, 0.01, seed=0)
    assert sorted(set(y[few])) == [0, 1, 2] and len(few) == 3  # at least one per class
    assert set(few) <= set(tr)
    with pytest.raises(ValueError, match="fraction"):
        label_subset(tr, y, 0.0)


def test_linear_probe_separates_blobs_and_is_at_chance_on_random_labels():
    x, y = blobs()
    tr, te = probe_split(y, 0.3, 0)
    res = linear_probe(x[tr], y[tr], x[te], y[te])
    assert res.accuracy > 0.97 and res.C in res.val_accuracy
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(600, 16))
    chance = linear_probe(noise[tr], y[tr], noise[te], y[te]).accuracy
    assert abs(chance - 0.25) < 0.1


def test_linear_probe_standardises_with_the_training_rows_only():
    """Scaling every feature by 1000 changes nothing (standardised); shifting the test rows alone does."""
    x, y = blobs(spread=2.0)
    tr, te = probe_split(y, 0.3, 0)
    a = linear_probe(x[tr], y[tr], x[te], y[te])
    b = linear_probe(x[tr] * 1000, y[tr], x[te] * 1000, y[te])
    assert np.array_equal(a.predictions, b.predictions)
    shifted = linear_probe(x[tr], y[tr], x[te] + 50, y[te])
    assert shifted.accuracy < a.accuracy - 0.3


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    small, large = rng.random(100) < 0.7, rng.random(10_000) < 0.7
    lo, hi = bootstrap_ci(small)
    assert lo < small.mean() < hi
    lo2, hi2 = bootstrap_ci(large)
    assert (hi2 - lo2) < (hi - lo) / 5
    se = np.sqrt(0.7 * 0.3 / 10_000)  # the normal approximation's 95% half-width is 1.96 se
    assert (hi2 - lo2) / 2 == pytest.approx(1.96 * se, rel=0.15)


def test_per_group_accuracy_and_the_worst_group_gap():
    correct = np.array([1, 1, 0, 1, 0, 0, 1, 1])
    groups = np.array(["a", "a", "a", "a", "b", "b", "b", None], dtype=object)
    per = per_group_accuracy(correct, groups)
    assert per == {"": {"accuracy": 1.0, "n": 1}, "a": {"accuracy": 0.75, "n": 4},
                   "b": {"accuracy": pytest.approx(1 / 3), "n": 3}}
    worst, gap = worst_group_gap(per, correct.mean())
    assert worst == "b" and gap == pytest.approx(0.625 - 1 / 3)


def test_alignment_and_uniformity_match_their_formulas():
    torch.manual_seed(0)
    z1, z2 = torch.randn(50, 8), torch.randn(50, 8)
    a, b = (z / z.norm(dim=1, keepdim=True) for z in (z1, z2))
    assert alignment(z1, z2) == pytest.approx(float(((a - b).norm(dim=1) ** 2).mean()), rel=1e-5)
    assert alignment(z1, z1) == pytest.approx(0.0, abs=1e-6)
    pairs = [float(torch.exp(-2 * (a[i] - a[j]).norm() ** 2)) for i in range(50) for j in range(i + 1, 50)]
    assert uniformity(z1) == pytest.approx(np.log(np.mean(pairs)), rel=1e-4)
    assert uniformity(torch.ones(20, 8)) == pytest.approx(0.0, abs=1e-6)  # collapsed: the worst value


def test_the_probe_table_holds_every_figure_and_the_label_fraction_curve_rises():
    x, y = blobs(n=1500, spread=3.0)
    groups = np.where(np.arange(1500) % 3 == 0, "rare", "common")
    t = probe_features(x, y, probe_split(y, 0.3, 0), groups={"site": groups}, draws=3)
    assert {"knn20", "knn200", "linear", "knn20_ci", "linear_ci", "label_fractions", "groups"} <= set(t)
    lo, hi = t["linear_ci"]
    assert lo <= t["linear"] <= hi
    curve = t["label_fractions"]
    assert curve["0.01"]["labels"] < curve["0.1"]["labels"] < curve["1.0"]["labels"] == t["n_train"]
    assert curve["0.01"]["mean"] <= curve["0.1"]["mean"] + 0.02 <= curve["1.0"]["mean"] + 0.04
    assert curve["0.01"]["draws"] == 3 and curve["1.0"]["mean"] == t["linear"]
    site = t["groups"]["site"]
    assert set(site["per_group"]) == {"rare", "common"} and site["worst_group"] in {"rare", "common"}


def pacs(every: int):
    z = need_shared("pacs-64", "pacs-64px.zip")
    with zipfile.ZipFile(z) as f:
        names = sorted(n for n in f.namelist() if n.endswith(".jpg"))[::every]
        x = np.stack([np.asarray(Image.open(io.BytesIO(f.read(n))).convert("RGB").resize((32, 32))) for n in names])
    parts = [n.split("/")[-3:] for n in names]  # domain/class/file
    classes = sorted({p[1] for p in parts})
    return x, np.array([classes.index(p[1]) for p in parts]), np.array([p[0] for p in parts], dtype=object)


def test_raw_pixel_probes_on_real_pacs_beat_chance_and_report_every_domain():
    x, y, domain = pacs(every=5)
    feats = x.reshape(len(x), -1).astype(np.float32)
    feats -= feats.mean(axis=1, keepdims=True)
    t = probe_features(feats, y, probe_split(y, 0.3, 0), groups={"domain": domain}, draws=2)
    chance = np.bincount(y).max() / len(y)
    assert t["linear"] > chance + 0.1 and t["knn20"] > chance
    per = t["groups"]["domain"]["per_group"]
    assert set(per) == {"art_painting", "cartoon", "photo", "sketch"}
    assert sum(v["n"] for v in per.values()) == t["n_test"]
    assert t["groups"]["domain"]["worst_group_gap"] > 0


def test_the_torch_logistic_regression_agrees_with_scikit_learn():
    """The same objective as sklearn's LogisticRegression(C): the two agree on nearly every prediction."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    from ssl_ops.probes.linear import _Logistic, standardise

    x, y = blobs(n=800, d=20, classes=5, spread=4.0, seed=3)
    tr, te = probe_split(y, 0.3, 0)
    a, b = standardise(x[tr], x[te])
    for C in (0.01, 1.0):
        ours = _Logistic(a, y[tr], C, max_iter=300).predict(b)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = LogisticRegression(C=C, max_iter=2000, tol=1e-8).fit(a, y[tr]).predict(b)
        assert (ours == ref).mean() >= 0.98, C


def test_probe_report_on_real_cifar_images_with_baselines_and_health(cifar_shards, tmp_path):
    """An encoder trained a few steps on real CIFAR-10 shards, probed on a labeled CIFAR-10 test subset written
    as an eval folder and ingested: the model, both baselines and the health figures on one fixed split."""
    from imagefiles import extract
    from ssl_ops.data import shard_urls
    from ssl_ops.evalset import scan_eval
    from ssl_ops.ingest import ImageLimits
    from ssl_ops.probes.evalset import load_eval_arrays
    from ssl_ops.probes.report import beats_baselines, probe_report, summary_rows
    from ssl_ops.train import ShardSource, TrainConfig, load_encoder, train

    cfg = TrainConfig.from_dict(dict(method="simclr", backbone="resnet18", width=8, image_size=32, batch_size=64, steps=10,
                                     warmup_steps=2, workers=0, checkpoint_every=0, device="cpu"))
    res = train(cfg, ShardSource(shard_urls([cifar_shards]), 32, 64, workers=0), tmp_path / "run")
    encoder, meta = load_encoder(res.encoder_path)
    extract(need_shared("cifar10-jpg", "test.zip"), tmp_path / "eval", "test/", every=20, strip=1)  # 500 images
    accepted = scan_eval(tmp_path / "eval", ImageLimits(), workers=1).accepted
    data = load_eval_arrays(accepted, tmp_path / "eval", 32)
    assert data.images.shape == (500, 3, 32, 32) and len(data.classes) == 10
    again = load_eval_arrays(accepted.take(list(range(accepted.num_rows))[::-1]), tmp_path / "eval", 32)
    assert again.sample_ids == data.sample_ids  # the order does not depend on the scan's

    report = probe_report(encoder, meta, data, seed=0, draws=2)
    assert report["split"] == {"seed": 0, "test_fraction": 0.3, "n_train": 350, "n_test": 150}
    rows = {r["encoder"]: r for r in summary_rows(report)}
    assert set(rows) == {"model", "raw_pixels", "random_init"}
    for r in rows.values():
        assert 0.1 <= r["linear"] <= 1 and r["linear_ci"][0] <= r["linear"] <= r["linear_ci"][1]
    assert rows["model"]["linear"] != rows["random_init"]["linear"] or rows["model"]["knn20"] != rows["random_init"]["knn20"]
    h = report["health"]
    assert 0 < h["embedding_std"] <= 1.5 and 1 <= h["effective_rank"] <= 64 and h["uniformity"] < 0
    assert 0 <= h["alignment"] <= 4
    assert isinstance(beats_baselines(report), bool)
    assert probe_report(encoder, meta, data, seed=0, draws=2)["model"] == report["model"]  # fixed seeds: same table
