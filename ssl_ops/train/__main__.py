"""Train from the command line, as one process or as every rank of a torchrun job.

    python -m ssl_ops.train --config train.json --index shards/b1/index.json shards/b2/index.json --out run/
    torchrun --nproc_per_node 2 -m ssl_ops.train --config train.json --index ... --out run/

--config: a JSON or YAML mapping of TrainConfig keys (or one with a `train:` section). Rank 0 prints a
progress line every --print-every steps and, at the end, the TrainResult as JSON on the last line.
Running it again on the same --out resumes from the checkpoint there.

From Python, main(argv, callback=..., on_result=..., on_error=...) runs the same command and hands rank 0's
per-step metrics, its TrainResult and any error message to the caller (pipelines.train_pipes reports them to
Dagster over Pipes; this module imports no orchestrator).

Before training, every index is checked for consistency and every shard's size and sha256 against it
(ssl_ops.shards.verify); a damaged one stops the run (exit 1) naming the shard and how to rebuild it. While
training, each shard's samples are counted against its index and a sample that does not decode is named.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path


def main(argv: list[str] | None = None, callback: Callable[[int, dict], None] | None = None,
         on_result: Callable[[object], None] | None = None,
         on_error: Callable[[str, int], None] | None = None) -> int:
    """-> the exit status: 0 done, 1 training stopped or damaged data, 2 bad config or arguments.
    callback(step, metrics): rank 0's per-step metrics (as the loop's callback); on_result(TrainResult): rank
    0's result at the end; on_error(message, status): before a non-zero status, on every rank."""
    ap = argparse.ArgumentParser(prog="python -m ssl_ops.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--index", nargs="+", required=True,
                    help="index.json files (paths or fsspec URLs) of the shards to use")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--print-every", type=int, default=10)
    ap.add_argument("--probe-rows", dest="monitor", type=Path, default=None,
                    help="a .npz of held-out probe-train rows (ssl_ops.train.monitor.monitor_arrays): a kNN probe "
                         "every train.probe_every steps, and what train.keep: best picks by")
    a = ap.parse_args(argv)

    import yaml

    from ssl_ops.data.loader import shard_entries
    from ssl_ops.shards.verify import ShardDamaged, require_intact
    from ssl_ops.train import ConfigError, ShardSource, TrainConfig, TrainingError, train
    from ssl_ops.train.distributed import init_from_env

    try:
        raw = yaml.safe_load(a.config.read_text()) or {}
        cfg = TrainConfig.from_dict(raw.get("train", raw) if isinstance(raw, dict) else raw)
        if cfg.image_size is None:
            raise ConfigError("train.image_size is auto, which the pipeline settles from the images' sizes before "
                              "it launches training: set train.image_size (px) in --config")
        if cfg.keep == "best" and a.monitor is None:
            raise ConfigError("train.keep: best picks by the training probe: give --probe-rows FILE, or keep: last")
        monitor = None
        if a.monitor is not None:
            from ssl_ops.train.monitor import KnnMonitor

            monitor = KnnMonitor.load(a.monitor)
        missing = [p for p in a.index if "://" not in p and not Path(p).is_file()]
        if missing:
            raise ConfigError(f"no shard index at {', '.join(missing)}")
        entries = shard_entries(a.index)
        samples = sum(_samples(p) for p in a.index)
    except (OSError, ValueError, yaml.YAMLError) as e:
        return _fail(e, 2, on_error)
    try:
        require_intact(a.index)  # local paths and fsspec URLs (s3://...: sizes and sha256 streamed from the store)
    except ShardDamaged as e:
        return _fail(e, 1, on_error)
    except OSError as e:  # the store holding the shards could not be read
        return _fail(e, 1, on_error)
    import torch

    kind = "cuda" if torch.cuda.is_available() and cfg.device != "cpu" else "cpu"
    info = init_from_env(kind)
    if not cfg.fitted:  # the device's keys left auto (backbone, width, batch size): settled for this device
        from ssl_ops.train.recipe import fit

        cfg, notes = fit(cfg, device=kind)
        for n in notes if info.is_main else []:
            print(f"recipe: {n}", flush=True)

    def show(step, m):
        if "probe_knn20" in m:
            print(f"probe after {step} steps: kNN k=20 {m['probe_knn20']:.4f} on held-out probe-train rows", flush=True)
        elif step % a.print_every == 0:
            print(f"step {step} loss {m['loss']:.4f} lr {m['lr']:.3g} {m['images_per_s']:.0f} images/s "
                  f"data wait {m['data_wait_share']:.0%}", flush=True)
        if callback is not None:
            callback(step, m)

    try:
        source = ShardSource([u for u, _ in entries], cfg.image_size, cfg.batch_size // info.world, cfg.workers,
                             cfg.seed, info.rank, info.world, expected=dict(entries))
        res = train(cfg, source, a.out, num_samples=samples or None, callback=show, monitor=monitor)
    except (TrainingError, ShardDamaged) as e:
        return _fail(e, 1, on_error)
    if info.is_main:
        print(json.dumps(res.to_dict()), flush=True)
        if on_result is not None:
            on_result(res)
    return 0


def _fail(e: Exception, status: int, on_error) -> int:
    from ssl_ops.escape import terminal

    print(f"error: {terminal(str(e))}", file=sys.stderr, flush=True)  # paths hold batch names: data
    if on_error is not None:
        on_error(str(e), status)
    return status


def _samples(index: str) -> int:
    if "://" in index:
        import fsspec

        with fsspec.open(index, "rt") as f:
            return json.load(f).get("samples", 0)
    return json.loads(Path(index).read_text()).get("samples", 0)


if __name__ == "__main__":
    raise SystemExit(main())
