"""A consumer elsewhere (a training pod) trains from the published shards in the bucket, verified where they
are: each shard's size and sha256 streamed from the store against the index."""

import json
import os
import subprocess
import sys
import uuid

from ssl_ops.demo_data import write_demo
from ssl_ops.home import Home
from ssl_ops.ingest import ImageLimits, scan_batch
from ssl_ops.shards import ShardConfig, shard_batch
from ssl_ops.storage import ObjectStore


def test_training_reads_and_verifies_the_published_shards_in_the_bucket(prod_env, tmp_path):
    svc = prod_env
    h = Home.resolve(tmp_path / "h").ensure()
    write_demo(h, batches=1)
    scan = scan_batch(h.batch_dir("demo-001"), "demo-001", ImageLimits(), workers=1)
    shard_batch(scan.accepted, h.batch_dir("demo-001"), h.shard_dir("demo-001"), ShardConfig(max_samples=150))
    store = ObjectStore(f"s3://sslpipe/t-{uuid.uuid4().hex[:8]}", {"endpoint_url": svc.s3_endpoint})
    store.publish(h.shard_dir("demo-001"), "shards/demo-001", last="index.json")
    cfg = tmp_path / "train.json"
    cfg.write_text(json.dumps({"method": "simclr", "width": 8, "image_size": 16, "batch_size": 32, "steps": 3,
                               "warmup_steps": 1, "workers": 0, "checkpoint_every": 0, "health_every": 1}))
    index = store.uri("shards/demo-001/index.json")
    # a pod's environment: the object store's address and keys, nothing of the home
    env = {**os.environ, "AWS_ENDPOINT_URL": svc.s3_endpoint}

    def train(out):
        return subprocess.run([sys.executable, "-m", "ssl_ops.train", "--config", str(cfg), "--index", index,
                               "--out", str(tmp_path / out)], env=env, capture_output=True, text=True, timeout=600)

    p = train("run1")
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["steps"] == 3 and result["images_seen"] == 96
    # one byte of a published shard changed in the bucket (same size): refused before training, named
    name = json.loads(store.read_bytes("shards/demo-001/index.json"))["shards"][1]["name"]
    data = bytearray(store.read_bytes(f"shards/demo-001/{name}"))
    data[len(data) // 2] ^= 0xFF
    store.write_bytes(f"shards/demo-001/{name}", bytes(data))
    p = train("run2")
    assert p.returncode == 1
    assert f"{store.uri('shards/demo-001/' + name)}: sha256" in p.stderr and "differs from the index's" in p.stderr
    assert not (tmp_path / "run2" / "encoder.pt").exists()
