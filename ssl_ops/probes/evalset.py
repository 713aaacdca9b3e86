"""The accepted eval set as arrays for probing: images decoded at one size, integer labels, group columns.

    data = load_eval_arrays(read_manifest(home.accepted_path("eval")), home.eval_dir, image_size=32)
    data.at_size(24)   # the same rows decoded from their files at 24 px (cached): never 32 px pixels resized

Every encoder is probed from the eval images decoded at its own input size (ssl_ops.probes.report), so that an
encoder's figures do not depend on which other encoder it is probed beside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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
    decode: Callable[[int], torch.Tensor] | None = field(default=None, repr=False, compare=False)  # size -> images
    _sizes: dict = field(default_factory=dict, repr=False, compare=False)

    def at_size(self, size: int) -> torch.Tensor:
        """uint8 [N, 3, size, size]: the eval images decoded from their files at `size` px (the rows in the same
        order; cached). Arrays built without a decoder hold one size only: another is refused rather than
        resized, since a resize of another size's pixels is not what the encoder's own decode gives."""
        if tuple(self.images.shape[-2:]) == (size, size):
            return self.images
        if size not in self._sizes:
            if self.decode is None:
                raise ValueError(f"these eval arrays hold images at {self.images.shape[-1]} px and no decoder for "
                                 f"{size} px: load them with load_eval_arrays")
            self._sizes[size] = self.decode(size)
        return self._sizes[size]


def _decode_all(paths: list[Path], size: int) -> torch.Tensor:
    return torch.stack([decode_image(p.read_bytes(), size) for p in paths])


def load_eval_arrays(accepted: pa.Table, eval_dir: Path, image_size: int) -> EvalArrays:
    """Rows in sample-id order (a fixed order, whatever the scan order was)."""
    if accepted.num_rows == 0:
        raise ValueError("the eval set has no accepted images: materialize eval_images with a labeled set first")
    t = accepted.sort_by("sample_id")
    label_col = f"{ATTR_PREFIX}label"
    labels_raw = [str(v) for v in t.column(label_col).to_pylist()]
    classes = sorted(set(labels_raw))
    paths = [Path(eval_dir) / p for p in t.column("path").to_pylist()]
    groups = {c.removeprefix(ATTR_PREFIX): np.array(t.column(c).to_pylist(), dtype=object)
              for c in t.column_names if c.startswith(ATTR_PREFIX) and c != label_col}
    return EvalArrays(_decode_all(paths, image_size), np.array([classes.index(v) for v in labels_raw]), classes,
                      groups, t.column("sample_id").to_pylist(), decode=lambda size: _decode_all(paths, size))
