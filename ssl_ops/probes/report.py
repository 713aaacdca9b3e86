"""The whole probe report of an encoder on an eval set, with its baselines on the same split.

    report = probe_report(encoder, meta, data, seed=0)
    report["model"]["linear"], report["raw_pixels"]["linear"], report["random_init"]["knn200"], report["health"]

- model: the frozen encoder's features;
- raw_pixels: the images at the encoder's input size, flattened and centred per image (the reference
  figure's features);
- random_init: an encoder of the same architecture with random weights (seeded);
- champion (optional): another encoder, e.g. the registered champion, on the same split;
- health of the model's features on the eval images: embedding std, effective rank, uniformity, and
  alignment of two augmented views of each image.
The primary metric is the linear probe (MAE-style encoders are judged on it; their kNN is known to be poor).
"""

from __future__ import annotations

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


def probe_report(encoder: nn.Module, meta: dict, data: EvalArrays, seed: int = 0, test_fraction: float = 0.3,
                 draws: int = 3, champion: nn.Module | None = None, progress=None) -> dict:
    say = progress or (lambda msg: None)
    size = meta["image_size"]
    split = probe_split(data.labels, test_fraction, seed)
    images = data.images
    if images.shape[-1] != size:
        images = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear",
                                                 antialias=True).round().clamp(0, 255).to(torch.uint8)
    common = dict(labels=data.labels, split=split, groups=data.groups, draws=draws, seed=seed)
    report = {"split": {"seed": seed, "test_fraction": test_fraction, "n_train": int(len(split[0])),
                        "n_test": int(len(split[1]))},
              "classes": data.classes, "primary_metric": "linear"}
    say("probing the encoder")
    report["model"] = probe_features(extract_features(encoder, images, size), **common)
    say("probing the raw-pixel baseline")
    report["raw_pixels"] = probe_features(raw_pixel_features(images), **common)
    say("probing a randomly initialised encoder of the same architecture")
    report["random_init"] = probe_features(extract_features(random_encoder(meta, seed), images, size), **common)
    if champion is not None:
        say("probing the champion on the same split")
        report["champion"] = probe_features(extract_features(champion, images, size), **common)
    report["health"] = feature_health(encoder, images[split[1]], size, seed)
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


__all__ = ["beats_baselines", "feature_health", "probe_report", "random_encoder", "raw_pixel_features",
           "summary_rows"]
