"""Weighted kNN against a direct numpy computation of its formula, and on real CIFAR-10 raw pixels."""

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from imagefiles import need_shared
from ssl_ops.knn import knn_accuracy, knn_predict


def reference_knn(train, labels, test, num_classes, k, t):
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    out = []
    for q in test:
        sim = train @ q
        nn = np.argsort(-sim, kind="stable")[:k]
        votes = np.zeros(num_classes)
        for i in nn:
            votes[labels[i]] += np.exp(sim[i] / t)
        out.append(int(np.argmax(votes)))
    return np.array(out)


@pytest.mark.parametrize("k,t,chunk", [(1, 0.1, 7), (20, 0.1, 1024), (50, 0.5, 13)])
def test_matches_the_formula(k, t, chunk):
    rng = np.random.default_rng(k)
    train, test = rng.normal(size=(300, 16)), rng.normal(size=(40, 16))
    labels = rng.integers(0, 5, 300)
    got = knn_predict(torch.tensor(train), torch.tensor(labels), torch.tensor(test), 5, k, t, chunk=chunk)
    assert got.tolist() == reference_knn(train, labels, test, 5, k, t).tolist()


def test_clear_errors_and_small_train_sets():
    with pytest.raises(ValueError, match="labels"):
        knn_predict(torch.zeros(3, 4), torch.zeros(2), torch.zeros(1, 4), 2)
    with pytest.raises(ValueError, match="feature sizes differ"):
        knn_predict(torch.zeros(3, 4), torch.zeros(3), torch.zeros(1, 5), 2)
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert knn_predict(feats, torch.tensor([0, 1]), feats, 2, k=200).tolist() == [0, 1]  # k capped at N


def cifar_pixels(split: str, every: int = 1):
    z = need_shared("cifar10-jpg", f"{split}.zip")
    with zipfile.ZipFile(z) as f:
        names = sorted(n for n in f.namelist() if n.endswith(".jpg"))[::every]
        classes = sorted({n.split("/")[1] for n in names})
        x = np.stack([np.asarray(Image.open(io.BytesIO(f.read(n))).convert("RGB"), np.float32).reshape(-1)
                      for n in names])
        y = np.array([classes.index(n.split("/")[1]) for n in names])
    return torch.from_numpy(x - x.mean(axis=1, keepdims=True)), torch.from_numpy(y)  # per-image centred


@pytest.mark.slow
def test_raw_pixel_knn_reproduces_the_reference_figure_on_cifar10():
    """DESIGN.md / datasets README: weighted kNN on raw pixels (per-image centred, cosine, k=200, T=0.1),
    train 50k -> test 10k, reaches 44.2% on these files. The SSL encoders are judged against it."""
    xtr, ytr = cifar_pixels("train")
    xte, yte = cifar_pixels("test")
    acc = knn_accuracy(xtr, ytr, xte, yte, 10, k=200, temperature=0.1)
    assert acc == pytest.approx(0.442, abs=0.003)
