"""The accepted eval set as arrays for probing: images decoded at one size, integer labels, group columns.

    data = load_eval_arrays(read_manifest(home.accepted_path("eval")), home.eval_dir, image_size=32)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from ssl_ops.data.loader import decode_image
from ssl_ops.manifest import ATTR_PREFIX


@dataclass
class EvalArrays:
    images: torch.Tensor  # uint8 [N, 3, S, S]
    labels: np.ndarray  # int64 [N], indices into classes
    classes: list[str]
    groups: dict[str, np.ndarray]  # group column -> [N] values (object)
    sample_ids: list[str]


def load_eval_arrays(accepted: pa.Table, eval_dir: Path, image_size: int) -> EvalArrays:
    """Rows in sample-id order (a fixed order, whatever the scan order was)."""
    if accepted.num_rows == 0:
        raise ValueError("the eval set has no accepted images: materialize eval_images with a labeled set first")
    t = accepted.sort_by("sample_id")
    label_col = f"{ATTR_PREFIX}label"
    labels_raw = [str(v) for v in t.column(label_col).to_pylist()]
    classes = sorted(set(labels_raw))
    images = torch.stack([decode_image((Path(eval_dir) / p).read_bytes(), image_size)
                          for p in t.column("path").to_pylist()])
    groups = {c.removeprefix(ATTR_PREFIX): np.array(t.column(c).to_pylist(), dtype=object)
              for c in t.column_names if c.startswith(ATTR_PREFIX) and c != label_col}
    return EvalArrays(images, np.array([classes.index(v) for v in labels_raw]), classes, groups,
                      t.column("sample_id").to_pylist())
