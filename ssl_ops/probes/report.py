"""The whole probe report of an encoder on an eval set, with its baselines on the same split.

    report = probe_report(encoder, meta, data, seed=0)
    report["model"]["linear"], report["raw_pixels"]["linear"], report["random_init"]["knn200"], report["health"]

- model: the frozen encoder's features;
- raw_pixels: the images at the encoder's input size, flattened and centred per image (the reference
  figure's features);
- random_init: an encoder of the same architecture with random weights (seeded);
- champion (optional): another (encoder, meta), e.g. the registered champion, on the same split, through the
  same function (probe_encoder) from the eval images decoded at its own input size: its table equals the
  `model` table of its own report on that split;
- health of the model's features on the eval images: embedding std, effective rank, uniformity, and
  alignment of two augmented views of each image.
The primary metric is the linear probe (MAE-style encoders are judged on it; their kNN is known to be poor).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ssl_ops.augment import TwoViews
from ssl_ops.features import extract_features
from ssl_ops.models import build_backbone
from ssl_ops.probes.evalset import EvalArrays
from ssl_ops.probes.evaluate import probe_features
from ssl_ops.probes.health import alignment, uniformity
from ssl_ops.probes.split import probe_split
from ssl_ops.train.health import effective_rank, embedding_std


@dataclass(frozen=True)
class ProbeConfig:
    seed: int = 0  # the probe split's and the draws' seed
    test_fraction: float = 0.3  # share of the eval set held out as the probes' test rows
    draws: int = 3  # seeded draws for each label fraction below 100%

    def __post_init__(self):
        if not 0 < self.test_fraction < 1:  # (NaN fails this too)
            raise ValueError(f"probe test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.seed < 0:
            raise ValueError(f"probe seed must be >= 0, got {self.seed}")
        if self.draws < 1:
            raise ValueError(f"probe draws must be >= 1, got {self.draws}")


def raw_pixel_features(images: torch.Tensor) -> torch.Tensor:
    x = images.reshape(images.shape[0], -1).float()
    return x - x.mean(dim=1, keepdim=True)


def random_encoder(meta: dict, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_backbone(meta["backbone"], meta["image_size"], patch_size=meta.get("patch_size", 16),
                          width=meta.get("width", 64)).eval()


@torch.no_grad()
def feature_health(encoder: nn.Module, images: torch.Tensor, image_size: int, seed: int = 0,
                   max_n: int = 2048) -> dict:
    torch.manual_seed(seed)
    x = images[:max_n]
    f = extract_features(encoder, x, image_size)
    v1, v2 = TwoViews(image_size, "simclr")(x)
    encoder.eval()
    a, b = encoder(v1), encoder(v2)
    return {"embedding_std": embedding_std(f), "effective_rank": effective_rank(f), "uniformity": uniformity(f),
            "alignment": alignment(a, b)}


def images_at_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> uint8 [N, 3, size, size] (bilinear, antialiased; unchanged when already that size).
    Not used by the probes (they decode at each encoder's size: EvalArrays.at_size); for benches only."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear",
                                           antialias=True).round().clamp(0, 255).to(torch.uint8)


def projection_2d(features: torch.Tensor, labels, max_points: int = 2000, seed: int = 0) -> dict:
    """PCA of the features to 2-D (for a scatter plot coloured by class): {"x", "y", "label"}."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(features.shape[0], generator=g)[:max_points].sort().values
    f = features[idx].float()
    f = f - f.mean(dim=0)
    _, _, v = torch.linalg.svd(f, full_matrices=False)
    xy = f @ v[:2].T
    return {"x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(), "label": [int(labels[i]) for i in idx.tolist()]}


def probe_encoder(encoder: nn.Module, meta: dict, data: EvalArrays, split: tuple[np.ndarray, np.ndarray],
                  seed: int = 0, draws: int = 3, progress=None, name: str = "encoder") -> tuple[dict, torch.Tensor]:
    """The probe table of one encoder: the eval images decoded at its own input size (meta["image_size"]), its
    frozen features, probe_features on `split`. Every encoder of a report (the model, the champion) goes through
    this one path, so a champion probed beside its successor scores what it scored in its own report on the
    same split. -> (table, features)."""
    say = progress or (lambda msg: None)
    size = int(meta["image_size"])
    t0 = time.perf_counter()
    images = data.at_size(size)
    feats = extract_features(encoder, images, size)
    say(f"{name}: {feats.shape[1]}-dimensional features of {images.shape[0]} eval images at {size} px "
        f"({time.perf_counter() - t0:.1f} s)")
    table = probe_features(feats, data.labels, split=split, groups=data.groups, draws=draws, seed=seed,
                           progress=progress, name=name)
    table["image_size"] = size
    return table, feats


def probe_report(encoder: nn.Module, meta: dict, data: EvalArrays, seed: int = 0, test_fraction: float = 0.3,
                 draws: int = 3, champion: tuple[nn.Module, dict] | None = None, progress=None) -> dict:
    """progress: called with a line for each stage (decoding, features, each probe of each encoder, health)."""
    say = progress or (lambda msg: None)
    start = time.perf_counter()
    size = int(meta["image_size"])
    split = probe_split(data.labels, test_fraction, seed)
    common = dict(labels=data.labels, split=split, groups=data.groups, draws=draws, seed=seed, progress=progress)
    report = {"split": {"seed": seed, "test_fraction": test_fraction, "n_train": int(len(split[0])),
                        "n_test": int(len(split[1]))},
              "classes": data.classes, "primary_metric": "linear"}
    say(f"probing the encoder on {len(split[0])} train / {len(split[1])} test eval images (split seed {seed})")
    report["model"], feats = probe_encoder(encoder, meta, data, split, seed=seed, draws=draws, progress=progress,
                                           name="model")
    images = data.at_size(size)
    say(f"probing the raw-pixel baseline ({size} px, this model's input size)")
    report["raw_pixels"] = {**probe_features(raw_pixel_features(images), **common, name="raw pixels"),
                            "image_size": size}
    say("probing a randomly initialised encoder of the same architecture")
    report["random_init"], _ = probe_encoder(random_encoder(meta, seed), meta, data, split, seed=seed, draws=draws,
                                             progress=progress, name="random init")
    if champion is not None:
        net, cmeta = champion
        say(f"probing the champion on the same split, from the eval images decoded at its own {cmeta['image_size']} px")
        report["champion"], _ = probe_encoder(net, cmeta, data, split, seed=seed, draws=draws, progress=progress,
                                              name="champion")
    t0 = time.perf_counter()
    report["health"] = feature_health(encoder, images[split[1]], size, seed)
    report["projection"] = projection_2d(feats, data.labels, seed=seed)
    say(f"health of the model's embeddings ({time.perf_counter() - t0:.1f} s); probes done in "
        f"{time.perf_counter() - start:.1f} s")
    return report


def summary_rows(report: dict) -> list[dict]:
    """One row per model/baseline: the headline figures, for tables and cards."""
    rows = []
    for name in ("model", "champion", "random_init", "raw_pixels"):
        t = report.get(name)
        if t is None:
            continue
        fr = t["label_fractions"]
        rows.append({"encoder": name, "knn20": t["knn20"], "knn200": t["knn200"], "linear": t["linear"],
                     "linear_ci": t["linear_ci"],
                     **{f"linear@{float(k):g}": v["mean"] for k, v in fr.items()},
                     **{f"worst_gap[{g}]": v["worst_group_gap"] for g, v in t["groups"].items()}})
    return rows


def beats_baselines(report: dict, metric: str = "linear") -> bool:
    return all(report["model"][metric] > report[b][metric] for b in ("raw_pixels", "random_init"))


__all__ = ["ProbeConfig", "beats_baselines", "feature_health", "images_at_size", "probe_encoder", "probe_report",
           "projection_2d",
           "random_encoder", "raw_pixel_features", "summary_rows"]
