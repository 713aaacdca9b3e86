"""One rank of the DDP equivalence test (launched by torchrun from test_ddp.py).

    torchrun --nproc_per_node 2 tests/ssl_ops/ddp_worker.py IMAGES.pt CONFIG.json OUT_DIR

IMAGES.pt holds uint8 [steps, global_batch, 3, H, W]; rank r trains on rows [r*B/W, (r+1)*B/W) of each.
"""

import json
import os
import sys
from pathlib import Path

import torch

from ssl_ops.train import TrainConfig, train


def main():
    images_path, config_path, out = sys.argv[1:4]
    batches = torch.load(images_path, weights_only=True)
    cfg = TrainConfig.from_dict(json.loads(Path(config_path).read_text()))
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    per = batches.shape[1] // world

    def source(start, n):
        return (batches[s, rank * per:(rank + 1) * per] for s in range(start, start + n))

    res = train(cfg, source, Path(out))
    if rank == 0:
        Path(out, "result.json").write_text(json.dumps(res.to_dict()))


if __name__ == "__main__":
    main()
