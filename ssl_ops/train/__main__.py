"""Train from the command line, as one process or as every rank of a torchrun job.

    python -m ssl_ops.train --config train.json --index shards/b1/index.json shards/b2/index.json --out run/
    torchrun --nproc_per_node 2 -m ssl_ops.train --config train.json --index ... --out run/

--config: a JSON or YAML mapping of TrainConfig keys (or one with a `train:` section). Rank 0 prints a
progress line every --print-every steps and, at the end, the TrainResult as JSON on the last line.
Running it again on the same --out resumes from the checkpoint there.

Before training, every index is checked for consistency and every shard's size and sha256 against it
(ssl_ops.shards.verify); a damaged one stops the run (exit 1) naming the shard and how to rebuild it. While
training, each shard's samples are counted against its index and a sample that does not decode is named.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssl_ops.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--index", nargs="+", required=True,
                    help="index.json files (paths or fsspec URLs) of the shards to use")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--print-every", type=int, default=10)
    a = ap.parse_args(argv)

    import yaml

    from ssl_ops.data.loader import shard_entries
    from ssl_ops.shards.verify import ShardDamaged, require_intact
    from ssl_ops.train import ConfigError, ShardSource, TrainConfig, TrainingError, train
    from ssl_ops.train.distributed import init_from_env

    try:
        raw = yaml.safe_load(a.config.read_text()) or {}
        cfg = TrainConfig.from_dict(raw.get("train", raw) if isinstance(raw, dict) else raw)
        missing = [p for p in a.index if "://" not in p and not Path(p).is_file()]
        if missing:
            raise ConfigError(f"no shard index at {', '.join(missing)}")
        local = [p for p in a.index if "://" not in p]
        entries = shard_entries(a.index)
        samples = sum(_samples(p) for p in a.index)
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        require_intact(local)  # fsspec URLs: counted while reading (no local sha256 pass)
    except ShardDamaged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    import torch

    info = init_from_env("cuda" if torch.cuda.is_available() and cfg.device != "cpu" else "cpu")

    def show(step, m):
        if step % a.print_every == 0:
            print(f"step {step} loss {m['loss']:.4f} lr {m['lr']:.3g} {m['images_per_s']:.0f} images/s "
                  f"data wait {m['data_wait_share']:.0%}", flush=True)

    try:
        source = ShardSource([u for u, _ in entries], cfg.image_size, cfg.batch_size // info.world, cfg.workers,
                             cfg.seed, info.rank, info.world, expected=dict(entries))
        res = train(cfg, source, a.out, num_samples=samples or None, callback=show)
    except (TrainingError, ShardDamaged) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if info.is_main:
        print(json.dumps(res.to_dict()), flush=True)
    return 0


def _samples(index: str) -> int:
    if "://" in index:
        import fsspec

        with fsspec.open(index, "rt") as f:
            return json.load(f).get("samples", 0)
    return json.loads(Path(index).read_text()).get("samples", 0)


if __name__ == "__main__":
    raise SystemExit(main())
