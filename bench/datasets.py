"""The shared data sets (../shared/datasets beside the project) unpacked for the benchmarks, one way for all:

    n = extract_cifar("test", work / "eval", every=5)                  # <out>/<class>/<file>.jpg
    n_land, n_eval = extract_pacs(work / "eval", landing=work / "landing" / "pacs-001",
                                  to_eval=lambda i, row: i % 5 == 0, landing_metadata=True)

PACS's eval folder gets labels.csv (path,label,domain); with landing_metadata the landing batch gets
metadata.csv (path,domain), as a user's batch with a declared attribute would.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import Callable

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
CIFAR = DATA / "cifar10-jpg"
PACS = DATA / "pacs-64" / "pacs-64px.zip"


def need(p: Path) -> Path:
    if not p.exists():
        raise SystemExit(f"{p} is absent: the shared datasets (../shared/datasets beside the project) are needed")
    return p


def extract_cifar(split: str, out: Path, every: int = 1, parts: int = 1) -> int:
    """Every n-th image of CIFAR-10's train or test split (sorted by name) as out/<class>/<file>, or dealt in turn
    into `parts` folders out/cifar-<split>-a, -b, ... -> the number of images."""
    folders = [out / f"cifar-{split}-{chr(97 + i)}" if parts > 1 else out for i in range(parts)]
    with zipfile.ZipFile(need(CIFAR / f"{split}.zip")) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".jpg"))[::every]
        for i, n in enumerate(names):
            p = folders[i % parts] / n.split("/", 1)[1]  # <class>/<file>
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(zf.read(n))
    return len(names)


def extract_pacs(eval_dir: Path, every: int = 1, landing: Path | None = None,
                 to_eval: Callable[[int, dict], bool] | None = None,
                 landing_metadata: bool = False) -> tuple[int, int]:
    """Every n-th PACS image (rows of its labels.csv: path, domain, class, ...), the i-th of them into the labelled
    eval set when to_eval(i, row) says so (all of them without a landing folder), the rest into `landing` (images
    only; metadata.csv with the domain when landing_metadata). -> (landing images, eval images)."""
    with zipfile.ZipFile(need(PACS)) as zf:
        name = next(n for n in zf.namelist() if n.endswith("labels.csv"))
        prefix = name[:-len("labels.csv")]
        rows = list(csv.DictReader(io.TextIOWrapper(zf.open(name))))[::every]
        land, ev = [], []
        for i, r in enumerate(rows):
            into_eval = landing is None or (to_eval is not None and to_eval(i, r))
            p = (eval_dir if into_eval else landing) / r["path"]
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(zf.read(prefix + r["path"]))
            (ev if into_eval else land).append(r)
    eval_dir.mkdir(parents=True, exist_ok=True)
    with open(eval_dir / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "domain"])
        w.writerows([r["path"], r["class"], r["domain"]] for r in ev)
    if landing is not None and landing_metadata:
        with open(landing / "metadata.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "domain"])
            w.writerows([r["path"], r["domain"]] for r in land)
    return len(land), len(ev)
