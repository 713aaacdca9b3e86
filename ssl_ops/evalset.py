"""The labeled evaluation set: class folders (`<class>/<image>`) or `labels.csv` (path,label[,groups]).

    result = scan_eval(Path(".sslpipe/eval"), ImageLimits())
    result.accepted.column("attr_label")

Ingested like a training batch (same probes, quarantine and manifest schema, batch name "eval"),
with `label` and any group columns as attributes; images without a label are quarantined as
`unlabeled`.
"""

from __future__ import annotations

from pathlib import Path


from ssl_ops.home import EVAL_BATCH
from ssl_ops.ingest.metadata import MetadataError, Sidecar, load_sidecar, normalise_path
from ssl_ops.ingest.probe import ImageLimits
from ssl_ops.ingest.scan import Progress, ScanResult, list_batch_files, scan_batch
from ssl_ops.manifest import ATTR_PREFIX, table_digest

LABELS_CSV = "labels.csv"


def eval_sidecar(eval_dir: Path, links: str = "inside") -> Sidecar:
    if (eval_dir / LABELS_CSV).is_file() or (eval_dir / LABELS_CSV).is_symlink():
        sc = load_sidecar(eval_dir, (LABELS_CSV,), links=links)
        if "label" not in sc.attributes:
            raise MetadataError(f"{eval_dir / LABELS_CSV}: needs a 'label' column (columns: path, label[, groups...])")
        return Sidecar(sc.source, ["label"] + [a for a in sc.attributes if a != "label"], sc.rows)
    rows = {}
    for rel in list_batch_files(eval_dir, (LABELS_CSV,)):
        parts = rel.split("/")
        if len(parts) >= 2:
            rows[normalise_path(rel)] = {"label": parts[0]}
    return Sidecar("class folders", ["label"], rows)


def scan_eval(eval_dir: Path, limits: ImageLimits, workers: int | None = None,
              progress: Progress | None = None, links: str = "inside") -> ScanResult:
    if not eval_dir.is_dir():
        raise FileNotFoundError(f"eval folder {eval_dir} does not exist: put class folders or labels.csv + images there")
    return scan_batch(eval_dir, EVAL_BATCH, limits, prior={}, workers=workers, sidecar=eval_sidecar(eval_dir, links),
                      progress=progress, skip=(LABELS_CSV,), require="label", links=links)


def eval_digest(accepted) -> str:
    """Digest of the eval set's content: sample ids with their labels and groups, in id order."""
    cols = ["sample_id"] + sorted(c for c in accepted.column_names if c.startswith(ATTR_PREFIX))
    return table_digest(accepted.select(cols).sort_by("sample_id"))
