"""The whole probe report of an encoder on an eval set, with its baselines on the same split.

    report = probe_report(encoder, meta, data, seed=0)
    report["model"]["linear"], report["raw_pixels"]["linear"], report["random_init"]["knn200"], report["health"]

- model: the frozen encoder's features;
- raw_pixels: the images at the encoder's input size, flattened and centred per image (the reference
  figure's features);
- random_init: an encoder of the same architecture with random weights (seeded);
- champion (optional): another (encoder, meta), e.g. the registered champion, on the same split, at its own
  input size;
- health of the model's features on the eval images: embedding std, effective rank, uniformity, and
  alignment of two augmented views of each image.
The primary metric is the linear probe (MAE-style encoders are judged on it; their kNN is known to be poor).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """uint8 [N, 3, H, W] -> uint8 [N, 3, size, size] (bilinear, antialiased; unchanged when already that size)."""
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


def probe_report(encoder: nn.Module, meta: dict, data: EvalArrays, seed: int = 0, test_fraction: float = 0.3,
                 draws: int = 3, champion: tuple[nn.Module, dict] | None = None, progress=None) -> dict:
    say = progress or (lambda msg: None)
    size = meta["image_size"]
    split = probe_split(data.labels, test_fraction, seed)
    images = images_at_size(data.images, size)
    common = dict(labels=data.labels, split=split, groups=data.groups, draws=draws, seed=seed)
    report = {"split": {"seed": seed, "test_fraction": test_fraction, "n_train": int(len(split[0])),
                        "n_test": int(len(split[1]))},
              "classes": data.classes, "primary_metric": "linear"}
    say("probing the encoder")
    feats = extract_features(encoder, images, size)
    report["model"] = probe_features(feats, **common)
    say("probing the raw-pixel baseline")
    report["raw_pixels"] = probe_features(raw_pixel_features(images), **common)
    say("probing a randomly initialised encoder of the same architecture")
    report["random_init"] = probe_features(extract_features(random_encoder(meta, seed), images, size), **common)
    if champion is not None:
        say("probing the champion on the same split")
        net, cmeta = champion
        csize = cmeta["image_size"]
        report["champion"] = probe_features(extract_features(net, images_at_size(data.images, csize), csize), **common)
    report["health"] = feature_health(encoder, images[split[1]], size, seed)
    report["projection"] = projection_2d(feats, data.labels, seed=seed)
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


__all__ = ["ProbeConfig", "beats_baselines", "feature_health", "images_at_size", "probe_report", "projection_2d",
           "random_encoder", "raw_pixel_features", "summary_rows"]
