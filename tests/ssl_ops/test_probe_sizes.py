"""Every encoder of a probe report is probed through one path, from the eval images decoded at its own input
size: a champion's figures in its successor's report equal those of its own report on the same split, whatever
the successor's input size (two tiny encoders really trained by ssl_ops.train at 16 and 24 px on the digits)."""

from __future__ import annotations

import json

import pytest

from ssl_ops.data import shard_urls
from ssl_ops.demo_data import write_demo
from ssl_ops.evalset import scan_eval
from ssl_ops.home import Home
from ssl_ops.ingest import ImageLimits, scan_batch
from ssl_ops.probes.evalset import EvalArrays, load_eval_arrays
from ssl_ops.probes.report import probe_report
from ssl_ops.shards import ShardConfig, shard_batch
from ssl_ops.train import ShardSource, TrainConfig, load_encoder, train


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The demo's digits: one landing batch sharded, the labeled eval set ingested, and two encoders trained 2
    steps each, at 16 px and at 24 px."""
    root = tmp_path_factory.mktemp("sizes")
    home = Home.resolve(root / "home").ensure()
    write_demo(home, batches=1)
    batch = home.landing / "demo-001"
    scan = scan_batch(batch, "demo-001", ImageLimits(), workers=1)
    index = shard_batch(scan.accepted, batch, root / "shards", ShardConfig(max_samples=400))
    assert index.samples > 1000
    encoders = {}
    for size in (16, 24):
        cfg = TrainConfig.from_dict(dict(method="simclr", backbone="resnet18", width=8, image_size=size, batch_size=32,
                                         steps=2, warmup_steps=0, workers=0, checkpoint_every=0, device="cpu"))
        res = train(cfg, ShardSource(shard_urls([root / "shards" / "index.json"]), size, 32, workers=0), root / f"e{size}")
        encoders[size] = load_encoder(res.encoder_path)
    accepted = scan_eval(home.eval_dir, ImageLimits(), workers=1).accepted
    return {"encoders": encoders, "accepted": accepted, "eval_dir": home.eval_dir}


def test_the_eval_arrays_decode_each_size_from_the_files_not_from_another_size(digits):
    at24 = load_eval_arrays(digits["accepted"], digits["eval_dir"], 24)
    at16 = load_eval_arrays(digits["accepted"], digits["eval_dir"], 16)
    assert at24.images.shape[-1] == 24 and at24.at_size(24) is at24.images
    assert at24.at_size(16).shape == at16.images.shape and (at24.at_size(16) == at16.images).all()
    plain = EvalArrays(at16.images, at16.labels, at16.classes, at16.groups, at16.sample_ids)  # no decoder
    with pytest.raises(ValueError, match="no decoder for 24 px"):
        plain.at_size(24)


def test_a_champion_scores_in_its_successors_report_what_it_scored_in_its_own(digits):
    (champ, cmeta), (succ, smeta) = digits["encoders"][16], digits["encoders"][24]
    assert (cmeta["image_size"], smeta["image_size"]) == (16, 24)
    lines = []
    # the champion's own report: its eval arrays at its own size, as probe_report's asset loads them
    own = probe_report(champ, cmeta, load_eval_arrays(digits["accepted"], digits["eval_dir"], 16), seed=0, draws=1)
    # its successor's report: the eval arrays at the successor's size, the champion beside it
    later = probe_report(succ, smeta, load_eval_arrays(digits["accepted"], digits["eval_dir"], 24), seed=0, draws=1,
                         champion=(champ, cmeta), progress=lines.append)
    assert later["split"] == own["split"]
    assert later["champion"]["image_size"] == 16 and later["model"]["image_size"] == 24
    assert json.dumps(later["champion"], sort_keys=True) == json.dumps(own["model"], sort_keys=True)
    assert later["model"]["correct"] != later["champion"]["correct"]  # two encoders, not one table twice
    # progress: a line for each stage of each encoder
    text = "\n".join(lines)
    assert "model: 64-dimensional" in text and "champion: 64-dimensional" in text
    for stage in ("dimensional features of 599 eval images at 24 px", "model: kNN k=20, 200",
                  "model: linear probe", "raw pixels: linear probe", "random init: linear probe",
                  "dimensional features of 599 eval images at 16 px", "champion: linear probe",
                  "probes done in"):
        assert stage in text, (stage, text)
