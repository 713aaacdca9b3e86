"""Load benchmark: 200,000 small images over 20 batches through ingestion, validation, bias checks and sharding
(the `ingest_batch` job, through Dagster, as `sslpipe run` runs it), against the same library calls without
Dagster in the same command.

    python bench/load_ingest.py                       # 20 batches x 10,000 images (about 20 minutes on 2 cores)
    python bench/load_ingest.py --batches 3 --per-batch 2000  # a quick look

The images are CIFAR-10 train JPEGs re-encoded with varied sizes (20-64 px), JPEG qualities (50-95) and one of
four orientations (as is, mirrored, flipped, transposed), so that 4 x 50,000 distinct images exist; each batch
has a metadata.csv with a `site` group attribute. The contract is the shipped one plus that group (min share
0.05), so group representation, attribute drift, image drift (against the last 5 batches) and near duplicates
(inside the batch and against earlier batches) all run. Generated once into bench/_data/load/ (git-ignored).

Printed per batch: images/s end to end, wall seconds, and the peak resident memory of this process and of its
children (ingestion's worker processes) while that batch ran; then the totals, the memory slope over the
batches (flat = no whole-history lists), and Dagster's share of the wall time: 1 - (library-only seconds /
pipeline seconds) on batches 2..k+1 (the first pays for imports), where the library-only pass calls scan_batch, validate_manifest,
bias_report and shard_batch directly, on a fresh home, in this same command.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import threading
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ZIP = ROOT.parent / "shared" / "datasets" / "cifar10-jpg" / "train.zip"
DATA = ROOT / "bench" / "_data" / "load"
SITES = ("north", "south", "east", "west")
CONTRACT_GROUPS = "  groups: {site: {min_share: 0.05, values: [north, south, east, west]}}"


def _make_chunk(args) -> int:
    """Worker: re-encode a chunk of CIFAR-10 files into a batch folder (+ its metadata rows)."""
    from PIL import Image

    names, variant, out, seed = args
    import random

    rng = random.Random(seed)
    rows = []
    with zipfile.ZipFile(ZIP) as z:
        for n in names:
            im = Image.open(io.BytesIO(z.read(n))).convert("RGB")
            im = [im, im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
                  im.transpose(Image.Transpose.TRANSPOSE)][variant]
            side = rng.choice((20, 24, 28, 32, 40, 48, 64))
            w, h = side, max(16, int(side * rng.uniform(0.75, 1.33)))
            rel = f"{n.split('/')[1]}/{Path(n).stem}-v{variant}.jpg"
            p = Path(out) / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            im.resize((w, h)).save(p, "JPEG", quality=rng.randint(50, 95))
            rows.append(f"{rel},{rng.choice(SITES)}")
    return rows


def generate(batches: int, per_batch: int) -> Path:
    land = DATA / f"landing-{batches}x{per_batch}"
    if (land / ".complete").exists():
        return land
    if not ZIP.is_file():
        sys.exit(f"{ZIP} is absent: the shared datasets are needed for this benchmark")
    shutil.rmtree(land, ignore_errors=True)
    with zipfile.ZipFile(ZIP) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))
    total = batches * per_batch
    if total > 4 * len(names):
        sys.exit(f"at most {4 * len(names)} images can be made from CIFAR-10 here")
    jobs = []
    for b in range(batches):
        out = land / f"batch-{b + 1:02d}"
        for c in range(0, per_batch, 1000):
            idx = [b * per_batch + i for i in range(c, min(c + 1000, per_batch))]
            by_variant: dict[int, list[str]] = {}
            for i in idx:
                by_variant.setdefault(i // len(names), []).append(names[i % len(names)])
            jobs += [(ns, v, str(out), b * 100003 + c + v) for v, ns in by_variant.items()]
    print(f"generating {total:,} images in {batches} batches under {land} ...", flush=True)
    t = time.time()
    meta: dict[str, list[str]] = {}
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for job, rows in zip(jobs, pool.map(_make_chunk, jobs, chunksize=1)):
            meta.setdefault(job[2], []).extend(rows)
    for out, rows in meta.items():
        Path(out, "metadata.csv").write_text("path,site\n" + "\n".join(sorted(rows)) + "\n")
    (land / ".complete").write_text("ok")
    print(f"generated in {time.time() - t:.0f}s", flush=True)
    return land


class MemoryWatch:
    """Samples this process's and its children's resident memory (from /proc) every 50 ms; peak() since reset()."""

    def __init__(self):
        self.pid = os.getpid()
        self._peak = [0, 0]
        self._stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _children(self) -> list[int]:
        out = []
        for task in os.listdir(f"/proc/{self.pid}/task"):
            try:
                out += [int(x) for x in open(f"/proc/{self.pid}/task/{task}/children").read().split()]
            except OSError:
                pass
        return out

    def _run(self):
        while not self._stop.is_set():
            main = self._rss(self.pid)
            kids = sum(self._rss(c) for c in self._children())
            self._peak = [max(self._peak[0], main), max(self._peak[1], kids)]
            time.sleep(0.05)

    def reset(self):
        self._peak = [self._rss(self.pid), 0]

    def peak(self) -> tuple[int, int]:
        return tuple(self._peak)

    def stop(self):
        self._stop.set()


def contract_file(work: Path) -> Path:
    from data_contracts.contract import CONTRACTS_DIR

    text = (CONTRACTS_DIR / "unlabeled_images.yaml").read_text().replace("  groups: {}", CONTRACT_GROUPS)
    p = work / "contract.yaml"
    p.write_text(text)
    return p


def library_pass(land: Path, names: list[str], work: Path, contract_path: Path) -> list[float]:
    """The same work without Dagster: seconds per batch."""
    import pyarrow as pa

    from data_contracts import load_contract
    from data_contracts.ge_suite import validate_manifest
    from ssl_ops.bias import bias_report
    from ssl_ops.ingest import ImageLimits, scan_batch
    from ssl_ops.ingest.prior import PriorManifests
    from ssl_ops.manifest import read_manifest, write_table_atomic
    from ssl_ops.shards import ShardConfig, shard_batch

    c = load_contract(contract_path)
    im = c.images
    limits = ImageLimits(im.min_side, im.max_side, im.max_pixels, im.max_bytes, im.formats, im.modes)
    groups = {g: (r.min_share, r.values) for g, r in c.groups.items()}
    secs, done = [], []
    for b in names:
        t = time.perf_counter()
        prior = PriorManifests({d: work / d / "accepted.parquet" for d in done})
        r = scan_batch(land / b, b, limits, prior=prior)
        write_table_atomic(r.accepted, work / b / "accepted.parquet")
        validate_manifest(c, r.accepted, docs_dir=work / b / "docs", run_name=b)
        refs = [read_manifest(work / d / "accepted.parquet") for d in done[-c.bias.reference_batches:]]
        ref = pa.concat_tables(refs, promote_options="permissive") if refs else None
        rep = bias_report(b, r.accepted, ref, c.bias, groups)
        (work / b / "bias.md").write_text(rep.to_markdown())
        shard_batch(r.accepted, land / b, work / b / "shards", ShardConfig())
        secs.append(time.perf_counter() - t)
        done.append(b)
    return secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--per-batch", type=int, default=10_000)
    ap.add_argument("--baseline-batches", type=int, default=3, help="batches run again without Dagster")
    ap.add_argument("--keep", action="store_true", help="keep the bench home (bench/_data/load/home)")
    a = ap.parse_args()
    land = generate(a.batches, a.per_batch)
    names = sorted(p.name for p in land.iterdir() if p.is_dir())
    for p in land.rglob("*.jpg"):  # warm the page cache: both passes read from memory
        p.read_bytes()

    from pipelines.runner import run_pipeline
    from pipelines.settings import Settings

    work = DATA / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cpath = contract_file(work)
    (work / "config.yaml").write_text(f"contract: {cpath}\n")
    home = work / "home"
    s = Settings.from_env(home=home, landing=land, eval_dir=work / "no-eval").with_config_file(work / "config.yaml")
    watch = MemoryWatch()
    rows = []
    t_all = time.perf_counter()
    for i, b in enumerate(names):
        watch.reset()
        t = time.perf_counter()
        outs = run_pipeline(s, select=["raw_images", "validated_images", "bias_report", "image_shards"],
                            only_batches=[b], echo=lambda m: None, log_level="WARNING")
        secs = time.perf_counter() - t
        main_peak, kids_peak = watch.peak()
        o = outs[-1]
        if not o.success:
            sys.exit(f"batch {b} failed: {o.errors} {[(c.check, c.why) for c in o.blocked]}")
        idx = json.loads((home / "shards" / b / "index.json").read_text())
        n = sum(1 for p in (land / b).rglob("*") if p.is_file()) - 1
        rows.append({"batch": b, "images": n, "sharded": idx["samples"], "seconds": round(secs, 2),
                     "images_per_s": round(n / secs), "peak_rss_mb": round(main_peak / 2**20),
                     "peak_children_rss_mb": round(kids_peak / 2**20),
                     "warnings": [c.check for c in o.failed_checks]})
        r = rows[-1]
        print(f"[{i + 1:2d}/{len(names)}] {b}: {n:,} images in {secs:6.1f}s = {r['images_per_s']:5,} /s; peak RSS "
              f"{r['peak_rss_mb']} MB (+ workers {r['peak_children_rss_mb']} MB); sharded {idx['samples']:,}; "
              f"warnings {r['warnings'] or 'none'}", flush=True)
    wall = time.perf_counter() - t_all
    watch.stop()
    # the first batch of each pass pays for imports and first-use set-up: compare batches 2..k+1
    k = min(a.baseline_batches, len(names) - 1)
    lib = library_pass(land, names[:k + 1], work / "library", cpath)[1:]
    pipe = [r["seconds"] for r in rows[1:k + 1]]
    total = sum(r["images"] for r in rows)
    first = rows[: max(1, len(rows) // 4)]
    last = rows[-max(1, len(rows) // 4):]
    mem_first = sum(r["peak_rss_mb"] for r in first) / len(first)
    mem_last = sum(r["peak_rss_mb"] for r in last) / len(last)
    half = rows[len(rows) // 2:]  # after warm-up (imports, caches): growth here would be per-batch history
    xs, ys = range(len(half)), [r["peak_rss_mb"] for r in half]
    mx, my = (len(half) - 1) / 2, sum(ys) / len(ys)
    slope = (sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(sum((x - mx) ** 2 for x in xs), 1e-9)
             if len(half) > 1 else 0.0)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "batches": len(rows), "images": total, "wall_s": round(wall, 1), "images_per_s": round(total / wall),
        "peak_rss_mb_first_quarter_mean": round(mem_first), "peak_rss_mb_last_quarter_mean": round(mem_last),
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in rows),
        "peak_rss_mb_per_batch_second_half": round(slope, 2),
        "peak_children_rss_mb_max": max(r["peak_children_rss_mb"] for r in rows),
        "baseline_batches": k, "pipeline_s": [round(x, 1) for x in pipe], "library_s": [round(x, 1) for x in lib],
        "dagster_share": round(1 - sum(lib) / sum(pipe), 3),
        "per_batch": rows,
    }
    (DATA / "results.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "per_batch"}, indent=2))
    print(f"\n{total:,} images in {len(rows)} batches through ingest, validation, bias checks and sharding: "
          f"{wall:.0f}s, {total / wall:,.0f} images/s end to end")
    print(f"peak RSS of the run's process: first quarter of the batches {mem_first:.0f} MB, last quarter "
          f"{mem_last:.0f} MB (max {report['peak_rss_mb_max']} MB; ingestion workers at most "
          f"{report['peak_children_rss_mb_max']} MB); slope over the second half of the batches {slope:+.2f} MB per "
          f"batch")
    print(f"Dagster's share of the wall time on batches 2-{k + 1}: {report['dagster_share']:.1%} "
          f"(pipeline {sum(pipe):.1f}s vs library calls {sum(lib):.1f}s)")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
