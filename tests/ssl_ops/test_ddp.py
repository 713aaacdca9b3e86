"""DDP through torchrun on 2 CPU processes (gloo) computes what one process computes on the same global batch:
gathered negatives, batch norm synchronised across ranks, averaged gradients."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssl_ops.models import build_backbone
from ssl_ops.train import TrainConfig, load_encoder, train

WORKER = Path(__file__).with_name("ddp_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def torchrun(*args, nproc=2, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def real_batches(cifar_shards, steps, batch):
    from ssl_ops.data import LoaderConfig, make_loader, shard_urls

    loader = make_loader(shard_urls([cifar_shards]), LoaderConfig(32, batch, workers=0, seed=3), steps=steps)
    return torch.stack(list(loader))


@pytest.mark.parametrize("method,options,lr", [
    ("simclr", {"hidden_dim": 64, "proj_dim": 32}, 0.05),  # negatives gathered across ranks
    ("vicreg", {"hidden_dim": 64, "proj_dim": 32}, 0.05),  # statistics over the gathered batch
    ("byol", {"hidden_dim": 64, "proj_dim": 32, "momentum": 0.9}, 0.05),  # EMA target with its own synced BN
    # all-reduced centre; DINO's first steps move the backbone little: a larger lr, so that 4 steps move it well
    # beyond float rounding
    ("dino", {"hidden_dim": 64, "out_dim": 64, "bottleneck_dim": 32, "momentum": 0.9}, 0.5),
])
def test_two_cpu_ranks_match_one_process_on_the_same_global_batch(method, options, lr, cifar_shards, tmp_path):
    batches = real_batches(cifar_shards, steps=4, batch=32)
    torch.save(batches, tmp_path / "images.pt")
    cfg = dict(method=method, backbone="resnet18", width=8, image_size=32, batch_size=32, steps=4, warmup_steps=1, lr=lr,
               optimizer="sgd",  # AdamW turns float rounding in near-zero gradients into lr-sized steps
               precision="fp32",  # bf16 (auto on a CPU that does it natively) rounds differently per rank
               augment=False, checkpoint_every=2, health_every=2, collapse_std=0.001, workers=0, device="cpu",
               method_options=options)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))

    one = train(TrainConfig.from_dict(cfg), lambda s, n: (batches[i] for i in range(s, s + n)), tmp_path / "one")
    run = torchrun(WORKER, tmp_path / "images.pt", tmp_path / "cfg.json", tmp_path / "two")
    assert run.returncode == 0, run.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "result.json").read_text())
    assert two["world"] == 2 and two["steps"] == one.steps == 4

    def curve(d):
        return [json.loads(x)["loss"] for x in (d / "metrics.jsonl").read_text().splitlines()]

    # float sums in another order (gathered across ranks, or another thread count in this process: one under
    # pytest-xdist) move DINO's small late losses (~0.08) by up to 1.6e-5: relative 1e-4, or 5e-5 absolute
    assert curve(tmp_path / "two") == pytest.approx(curve(tmp_path / "one"), rel=1e-4, abs=5e-5)
    a, _ = load_encoder(tmp_path / "one" / "encoder.pt")
    b, _ = load_encoder(tmp_path / "two" / "encoder.pt")
    torch.manual_seed(0)
    init = build_backbone("resnet18", 32, width=8)  # what the loop starts from (seed 0)
    moved = max(float((va - vi).abs().max()) for va, vi in zip(a.parameters(), init.parameters()))
    apart = max(float((va - vb).abs().max()) for va, vb in zip(a.state_dict().values(), b.state_dict().values()))
    assert apart < 2e-4 and moved > 20 * apart, (moved, apart)  # training moved weights far more than they differ


def test_torchrun_trains_on_shards_split_across_ranks(cifar_shards, tmp_path):
    (tmp_path / "cfg.yaml").write_text("train:\n  method: byol\n  backbone: resnet18\n  width: 8\n  image_size: 32\n  batch_size: 32\n"
                                       "  steps: 3\n  workers: 1\n  checkpoint_every: 0\n")
    run = torchrun("-m", "ssl_ops.train", "--config", tmp_path / "cfg.yaml", "--index", cifar_shards,
                   "--out", tmp_path / "out", "--print-every", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["world"] == 2 and result["steps"] == 3 and result["images_seen"] == 96
    assert "step 2 loss" in run.stdout
    assert (tmp_path / "out" / "encoder.pt").is_file()
