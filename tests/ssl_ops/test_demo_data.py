"""The embedded demo data: every digit written once, an eval set with no near copy in training, same files
every time."""

import csv
import hashlib

import numpy as np
from PIL import Image

from ssl_ops.demo_data import write_demo
from ssl_ops.home import Home
from ssl_ops.ingest.probe import _to_gray, gray_array
from ssl_ops.phash import hamming, phash64


def _hashes(paths) -> np.ndarray:
    return phash64(gray_array([_to_gray(Image.open(p)) for p in paths]))


def test_demo_writes_every_digit_once_and_keeps_near_copies_of_training_out_of_eval(tmp_path):
    home = Home.resolve(tmp_path / "home").ensure()
    w = write_demo(home)
    train = sorted(home.landing.glob("demo-*/*.png"))
    with open(home.eval_dir / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    evals = [home.eval_dir / r["path"] for r in rows]
    assert len(train) == sum(w["batches"].values()) and len(evals) == w["eval"] == len(rows)
    assert len(train) + len(evals) == 1797 and w["moved_to_train"] > 0
    assert not {p.name for p in train} & {p.name for p in evals}
    assert {r["label"] for r in rows} == {str(d) for d in range(10)}
    # the pipeline's leakage rule (4 pHash bits) finds nothing: none of the eval set is left out of shards
    d = hamming(_hashes(evals)[:, None], _hashes(train)[None, :])
    assert d.min() > 4
    assert 550 < len(evals) < 650  # about a third: the probes' 30% test split holds ~180 digits

    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in train[:50] + evals[:50]}
    assert write_demo(home) == w
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before} == before
