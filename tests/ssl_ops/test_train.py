"""The training loop: config errors, schedules, LARS, exact resume, non-finite and collapse stops, health
metrics, and safe weights."""

import json
import math
import pickle

import pytest
import torch

from ssl_ops.data import shard_urls
from ssl_ops.train import (Collapse, ConfigError, NonFiniteLoss, ShardSource, TrainConfig, TrainingError,
                           effective_rank, embedding_std, load_encoder, lr_at, train)
from ssl_ops.train.checkpoint import load, save_atomic
from ssl_ops.train.optim import LARS

SMALL = dict(method="simclr", backbone="resnet18", width=8, image_size=32, batch_size=32, warmup_steps=2, workers=1,
             health_every=3, lr=1e-3, device="cpu")


def losses(out):
    return [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]


# -- config -----------------------------------------------------------------------------------------------------

def test_config_from_yaml_like_mappings_and_clear_errors():
    cfg = TrainConfig.from_dict({"method": "dino", "backbone": "vit_tiny", "image_size": 32, "batch_size": 64,
                                 "steps": 10, "lr": "1e-3", "method_options": {"local_crops": 2}})
    assert cfg.lr == 0.001 and cfg.steps == 10
    assert TrainConfig.from_dict({"epochs": 2, "batch_size": 256}).total_steps(1000) == math.ceil(2 * 1000 / 256)
    cases = [({"methd": "simclr"}, r"unknown key\(s\) \['methd'\]"),
             ({"method": "swav"}, "train.method 'swav' is unknown; choose one of simclr"),
             ({"backbone": "resnet101"}, "train.backbone 'resnet101' is unknown"),
             ({"method": "mae", "backbone": "resnet18"}, "mae needs a ViT backbone"),
             ({"steps": 10, "epochs": 1}, r"exactly one of train.steps, train.epochs and train.budget_minutes .*\[.steps., .epochs.\]"),
                 ({"steps": None, "budget_minutes": None}, r"exactly one of .* got none"),
                 ({"budget_minutes": 0}, "train.budget_minutes must be above 0"),
                 ({"keep": "first"}, "train.keep .first. is unknown; choose one of last, best"),
                 ({"probe_every": -1}, "train.probe_every must not be negative"),
             ({"steps": "many"}, r"train.steps: 'many' is not a valid int"),
             ({"steps": 2.5}, "train.steps: 2.5 is not a valid int"),
             ({"batch_size": 1}, "at least 2"),
             ({"backbone": "vit_tiny", "image_size": 30, "patch_size": 4}, "not a multiple of train.patch_size"),
             ({"compile": "yes"}, "train.compile: 'yes' is not a valid bool"),
             ({"method_options": {"temp": 1}}, r"\['temp'\] are not options of simclr; its options are temperature"),
             ({"method": "dino", "backbone": "vit_tiny", "image_size": 48, "patch_size": 16},
              "dino / vit_tiny cannot be built: DINO local_size 24 must be a multiple of the ViT patch size 16"),
             ({"method": "mae", "backbone": "vit_tiny", "method_options": {"mask_ratio": 1.5}},
              r"train.method_options.mask_ratio must be > 0 and < 1, got 1.5"),
             ({"method": "byol", "method_options": {"rotate": 360}},
              r"train.method_options.rotate must be >= 0 and <= 180, got 360"),
             ({"backbone": "vit_tiny", "patch_size": 0}, "train.patch_size must be positive, got 0"),
             ({"image_size": 100_000_000}, "train.image_size must be at most 4096 px"),
             ({"collapse_std": 0.1, "health_every": 0}, "collapse_std needs train.health_every > 0"),
             ({"optimizer": "lars", "lr": 0.002}, "far too small for LARS")]
    for d, msg in cases:
        with pytest.raises(ConfigError, match=msg):
            TrainConfig.from_dict(d)


# -- schedules and optimisers ----------------------------------------------------------------------------------

def test_lr_warms_up_linearly_then_follows_a_half_cosine_to_min_lr():
    assert lr_at(0, 100, 1.0, warmup_steps=10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, warmup_steps=10) == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, warmup_steps=10) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, warmup_steps=10, min_lr=0.2) == pytest.approx(0.6)  # half way down the cosine
    assert lr_at(100, 100, 1.0, warmup_steps=10, min_lr=0.2) == pytest.approx(0.2)
    assert lr_at(7, 50, 3e-3, 5) == lr_at(7, 50, 3e-3, 5)  # pure: no hidden state


def test_lars_scales_each_weight_update_by_its_trust_ratio_and_leaves_biases_plain():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # |w| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LARS([dict(params=[w], weight_decay=0.1, lars=True), dict(params=[b], weight_decay=0.0, lars=False)],
               lr=0.5, momentum=0.9, eta=0.001)
    w.grad, b.grad = torch.tensor([[0.0, 1.0]]), torch.tensor([2.0])
    d = torch.tensor([[0.0, 1.0]]) + 0.1 * torch.tensor([[3.0, 4.0]])  # gradient + weight decay
    trust = 0.001 * 5 / d.norm()
    opt.step()
    assert torch.allclose(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.5 * trust * d)
    assert torch.allclose(b.detach(), torch.tensor([1.0 - 0.5 * 2.0]))


# -- health -----------------------------------------------------------------------------------------------------

def test_health_metrics_tell_isotropic_from_collapsed_embeddings():
    torch.manual_seed(0)
    iso = torch.randn(2048, 64)
    assert embedding_std(iso) == pytest.approx(1.0, abs=0.05)
    assert effective_rank(iso) > 55
    assert embedding_std(torch.ones(100, 64) + 1e-7 * torch.randn(100, 64)) < 0.01
    line = torch.randn(500, 1) @ torch.randn(1, 64)
    assert effective_rank(line) < 1.1


# -- the loop on real shards -------------------------------------------------------------------------------------

def test_a_killed_run_resumes_at_the_same_step_lr_and_data_position(cifar_shards, tmp_path):
    """Uninterrupted 9 steps vs. a run that dies at step 7 (after the checkpoint at 6) and is restarted: the same
    step count, and steps 6-8 see the same data, lr and weights, so the loss curve continues exactly."""
    urls = shard_urls([cifar_shards])
    cfg = TrainConfig.from_dict({**SMALL, "steps": 9, "checkpoint_every": 3})

    def source():
        return ShardSource(urls, 32, 32, workers=1, seed=cfg.seed)

    whole = train(cfg, source(), tmp_path / "whole")

    class Killed(Exception):
        pass

    def die_at_7(step, metrics):
        if step == 7:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, source(), tmp_path / "resumed", callback=die_at_7)
    assert load(tmp_path / "resumed" / "checkpoint.pt")["step"] == 6
    lrs = []
    again = train(cfg, source(), tmp_path / "resumed", callback=lambda s, m: lrs.append((s, m["lr"])))
    assert again.resumed_from == 6 and again.steps == whole.steps == 9 and again.images_seen == 9 * 32
    assert [s for s, _ in lrs] == [6, 7, 8]
    assert [lr for _, lr in lrs] == [lr_at(s, 9, cfg.lr, cfg.warmup_steps) for s in (6, 7, 8)]
    a, b = losses(tmp_path / "whole"), losses(tmp_path / "resumed")
    assert len(b) == 9  # the metrics log holds each step once: steps 0-5 from the first run, 6-8 from the resume
    assert b == pytest.approx(a, rel=1e-5, abs=1e-6)
    ea, _ = load_encoder(tmp_path / "whole" / "encoder.pt")
    eb, _ = load_encoder(tmp_path / "resumed" / "encoder.pt")
    for (k, va), vb in zip(ea.state_dict().items(), eb.state_dict().values()):
        assert torch.allclose(va.float(), vb.float(), atol=1e-5), k


def test_resuming_with_a_different_config_is_refused(cifar_shards, tmp_path):
    urls = shard_urls([cifar_shards])
    cfg = TrainConfig.from_dict({**SMALL, "steps": 2, "checkpoint_every": 1})
    train(cfg, ShardSource(urls, 32, 32, workers=0), tmp_path)
    other = TrainConfig.from_dict({**SMALL, "steps": 2, "checkpoint_every": 1, "lr": 0.1})
    with pytest.raises(TrainingError, match=r"another config \(lr: 0.001 -> 0.1\).*delete the checkpoint"):
        train(other, ShardSource(urls, 32, 32, workers=0), tmp_path)
    done = train(cfg, ShardSource(urls, 32, 32, workers=0), tmp_path)  # complete: nothing left to train
    assert done.steps == 2 and done.resumed_from == 2 and math.isfinite(done.final_loss)


def test_a_non_finite_loss_stops_with_a_clear_error(cifar_shards, tmp_path):
    cfg = TrainConfig.from_dict({**SMALL, "steps": 20, "optimizer": "sgd", "lr": 1e12, "warmup_steps": 0,
                                 "clip_grad": 0, "checkpoint_every": 0})
    with pytest.raises(NonFiniteLoss, match=r"not finite at step \d+ .*Lower train.lr"):
        train(cfg, ShardSource(shard_urls([cifar_shards]), 32, 32, workers=0), tmp_path)


def test_a_collapsed_embedding_aborts_the_run_when_asked(tmp_path):
    """Identical grey images give identical features: embedding std 0, below collapse_std."""

    def grey(start, n):
        return (torch.full((32, 3, 32, 32), 128, dtype=torch.uint8) for _ in range(n))

    cfg = TrainConfig.from_dict({**SMALL, "steps": 6, "warmup_steps": 0, "health_every": 2, "collapse_std": 0.05,
                                 "augment": False, "checkpoint_every": 0})
    with pytest.raises(Collapse, match=r"collapsed at step 0: embedding_std 0.0000 < train.collapse_std 0.05"):
        train(cfg, grey, tmp_path)


def test_per_step_metrics_reach_the_callback(cifar_shards, tmp_path):
    seen = {}
    cfg = TrainConfig.from_dict({**SMALL, "steps": 4, "checkpoint_every": 0})
    res = train(cfg, ShardSource(shard_urls([cifar_shards]), 32, 32, workers=1), tmp_path,
                callback=lambda s, m: seen.setdefault(s, m))
    assert sorted(seen) == [0, 1, 2, 3]
    assert {"loss", "lr", "images_per_s", "views_per_s", "data_wait_share", "grad_norm"} <= set(seen[1])
    assert "embedding_std" in seen[0] and "effective_rank" in seen[3]
    assert 0 <= seen[2]["data_wait_share"] <= 1 and seen[2]["views_per_s"] == pytest.approx(
        2 * seen[2]["images_per_s"])
    assert res.images_per_s > 0 and res.device == "cpu" and res.health["effective_rank"] >= 1


# -- weights --------------------------------------------------------------------------------------------------

def test_the_encoder_round_trips_and_arbitrary_pickles_are_refused(cifar_shards, tmp_path):
    cfg = TrainConfig.from_dict({**SMALL, "steps": 2, "checkpoint_every": 0})
    res = train(cfg, ShardSource(shard_urls([cifar_shards]), 32, 32, workers=0), tmp_path)
    enc, meta = load_encoder(res.encoder_path)
    assert meta["backbone"] == "resnet18" and meta["width"] == 8 and meta["steps"] == 2
    x = torch.randn(4, 3, 32, 32)
    assert enc(x).shape == (4, 64)

    class Evil:
        def __reduce__(self):
            return (print, ("this ran while loading",))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    with pytest.raises(pickle.UnpicklingError):
        load(tmp_path / "evil.pt")
    save_atomic({"x": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(load(tmp_path / "ok.pt")["x"], torch.ones(2))
    assert not list(tmp_path.glob(".ok.pt.tmp*"))


def test_bf16_autocast_trains_on_cpu_when_asked(cifar_shards, tmp_path):
    """bf16 may be forced on any CPU (under "auto" only GPUs and CPUs with native bf16 use it)."""
    cfg = TrainConfig.from_dict({**SMALL, "steps": 3, "precision": "bf16", "checkpoint_every": 0})
    res = train(cfg, ShardSource(shard_urls([cifar_shards]), 32, 32, workers=0), tmp_path)
    assert res.steps == 3 and math.isfinite(res.final_loss)
    enc, _ = load_encoder(res.encoder_path)
    assert next(enc.parameters()).dtype == torch.float32  # weights stay fp32 under autocast


@pytest.mark.slow
def test_torch_compile_trains_like_eager(cifar_shards, tmp_path):
    """compile=True (inductor on CPU; about 40 s of compiling) follows the eager loss curve, and the exported
    encoder's weights carry no compile wrapper prefixes."""
    urls = shard_urls([cifar_shards])
    base = {**SMALL, "steps": 4, "checkpoint_every": 0, "health_every": 0, "workers": 0}
    eager = train(TrainConfig.from_dict(base), ShardSource(urls, 32, 32, workers=0), tmp_path / "eager")
    compiled = train(TrainConfig.from_dict({**base, "compile": True}), ShardSource(urls, 32, 32, workers=0),
                     tmp_path / "compiled")
    assert compiled.steps == eager.steps == 4
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), rel=1e-3)
    enc, _ = load_encoder(compiled.encoder_path)  # strict load: same keys as an eager backbone
    assert not any("_orig_mod" in k for k in enc.state_dict())


def test_a_failed_checkpoint_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    """A full disk while a checkpoint is written removes its temporary file; a dead process's is removed by the
    next write (a run killed during training left `.checkpoint.pt.tmp<pid>` behind)."""
    import errno

    import torch

    from ssl_ops.train import checkpoint as ck

    (tmp_path / ".checkpoint.pt.999999999.tmp").write_bytes(b"junk of a dead writer")

    def full(obj, f):
        f.write(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="No space left"):
        ck.save_atomic({"step": 1}, tmp_path / "checkpoint.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_cli_shows_a_hostile_path_in_an_error_escaped(tmp_path, capsys):
    """Shard paths and URLs hold batch names (from the data): an ESC in one is shown, not obeyed."""
    from ssl_ops.train.__main__ import main as train_main

    cfg = tmp_path / "train.json"
    cfg.write_text('{"method": "simclr", "steps": 1, "image_size": 32}')
    hostile = tmp_path / "b\x1b[31mred" / "index.json"
    assert train_main(["--config", str(cfg), "--index", str(hostile), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no shard index at" in err and "\x1b" not in err


def test_the_cli_refuses_an_auto_image_size_and_keep_best_without_a_monitor(tmp_path, capsys):
    """The pipeline fits image_size before it launches; a hand-written config must say it."""
    from ssl_ops.train.__main__ import main as train_main

    cfg = tmp_path / "train.json"
    index = tmp_path / "index.json"
    index.write_text("{}")
    cfg.write_text('{"method": "simclr", "steps": 1}')
    assert train_main(["--config", str(cfg), "--index", str(index), "--out", str(tmp_path / "o")]) == 2
    assert "train.image_size is auto" in capsys.readouterr().err
    cfg.write_text('{"method": "simclr", "steps": 1, "image_size": 32, "keep": "best"}')
    assert train_main(["--config", str(cfg), "--index", str(index), "--out", str(tmp_path / "o")]) == 2
    assert "give --probe-rows FILE" in capsys.readouterr().err


# -- the probe in step with training (the budget: test_train_budget.py) ----------------------------------------

def _monitor(tmp_path, n=60, classes=3):
    import numpy as np

    from ssl_ops.probes.split import probe_split
    from ssl_ops.train.monitor import KnnMonitor, monitor_arrays

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = np.arange(n) % classes
    train_idx, test_idx = probe_split(labels)
    path = tmp_path / "monitor.npz"
    arrays = monitor_arrays(images, labels, train_idx)
    np.savez(path, **arrays)
    return KnnMonitor.load(path), arrays, test_idx


def test_the_training_probe_logs_a_curve_on_probe_train_rows_and_keep_best_keeps_the_best(cifar_shards, tmp_path):
    import numpy as np

    urls = shard_urls([cifar_shards])
    monitor, arrays, test_idx = _monitor(tmp_path)
    assert len(arrays["images"]) == 60 - len(test_idx)  # the probe's test rows are not in it
    assert sorted(np.concatenate([arrays["bank"], arrays["query"]])) == list(range(len(arrays["images"])))
    seen = []
    cfg = TrainConfig.from_dict({**SMALL, "steps": 6, "probe_every": 2, "checkpoint_every": 0, "keep": "best"})
    res = train(cfg, ShardSource(urls, 32, 32, workers=0), tmp_path / "p", monitor=monitor,
                callback=lambda s, m: "probe_knn20" in m and seen.append((s, m["probe_knn20"])))
    assert [s for s, _ in res.probe_curve] == [0, 2, 4, 6] and res.probe_curve == [list(x) for x in seen]
    rows = [json.loads(x) for x in (tmp_path / "p" / "probes.jsonl").read_text().splitlines()]
    assert [[r["step"], r["knn20"]] for r in rows] == res.probe_curve
    assert all(0 <= a <= 1 for _, a in res.probe_curve)
    best_step, best_acc = max(res.probe_curve, key=lambda p: (p[1], p[0]))
    _, meta = load_encoder(tmp_path / "p" / "encoder.pt")
    if best_step == 6:
        assert res.kept_step is None and meta["steps"] == 6
    else:  # the encoder kept is the best probe's: its figure reproduces
        assert res.kept_step == best_step and meta["steps"] == best_step and meta["kept"] == "best"
    enc, meta = load_encoder(tmp_path / "p" / "encoder.pt")
    assert monitor(enc, 32) == pytest.approx(best_acc if res.kept_step is not None else res.probe_curve[-1][1], abs=1e-6)
    # keep: last (the default) keeps the last step's encoder whatever the probe says
    last = train(TrainConfig.from_dict({**SMALL, "steps": 6, "probe_every": 2, "checkpoint_every": 0}),
                 ShardSource(urls, 32, 32, workers=0), tmp_path / "l", monitor=monitor)
    assert last.kept_step is None and load_encoder(tmp_path / "l" / "encoder.pt")[1]["steps"] == 6
    assert not (tmp_path / "l" / "encoder_best.pt").exists()


def test_keep_best_really_picks_an_earlier_encoder_when_training_makes_it_worse(cifar_shards, tmp_path):
    """A probe whose labels are what the random init separates best: a later encoder is worse, so the best
    is an earlier one, and the kept encoder is that one, not the last."""
    urls = shard_urls([cifar_shards])
    cfg = TrainConfig.from_dict({**SMALL, "steps": 4, "probe_every": 1, "checkpoint_every": 0, "keep": "best",
                                 "lr": 0.5, "warmup_steps": 0})

    class Falling:
        """A monitor whose figure falls with each call: the best is the first (step 0)."""
        calls = 0

        def __call__(self, backbone, size, device="cpu"):
            Falling.calls += 1
            return 1.0 / Falling.calls

    res = train(cfg, ShardSource(urls, 32, 32, workers=0), tmp_path / "f", monitor=Falling())
    assert res.kept_step == 0 and res.probe_curve[0] == [0, 1.0]
    kept, meta = load_encoder(tmp_path / "f" / "encoder.pt")
    init = TrainConfig.from_dict({**SMALL, "steps": 1})
    torch.manual_seed(init.seed)
    from ssl_ops.models import build_backbone

    fresh = build_backbone("resnet18", 32, width=8)
    assert meta["steps"] == 0
    assert all(torch.equal(a, b) for a, b in zip(kept.state_dict().values(), fresh.state_dict().values()))


def test_training_goes_on_in_train_mode_after_each_probe(cifar_shards, tmp_path, monkeypatch):
    """The probe puts the encoder in eval mode; the steps after it must train with batch statistics (and, under
    DDP, all-reduce them on every rank), not with the running ones."""
    import ssl_ops.train.loop as loop

    urls = shard_urls([cifar_shards])
    built, modes = [], []
    real = loop.build_method
    monkeypatch.setattr(loop, "build_method", lambda *a, **k: built.append(real(*a, **k)) or built[-1])

    def record(step, metrics):
        if "loss" in metrics:
            modes.append(all(m.training for m in built[0].modules()))

    cfg = TrainConfig.from_dict({**SMALL, "steps": 4, "probe_every": 2, "checkpoint_every": 0, "workers": 0})
    train(cfg, ShardSource(urls, 32, 32, workers=0), tmp_path / "m", monitor=lambda backbone, size, device: 0.5,
          callback=record)
    assert modes == [True] * 4


def test_auto_precision_is_bf16_on_gpus_and_on_cpus_that_do_it_natively(cifar_shards, monkeypatch, tmp_path,
                                                                          capsys):
    from ssl_ops.train import precision

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    for native in (True, False):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
        assert precision.use_bf16("auto", cpu) is native and precision.use_bf16("auto", gpu)
        assert precision.use_bf16("bf16", cpu) and not precision.use_bf16("fp32", cpu)
        assert not precision.use_bf16("fp32", gpu)
        # the loop says when "auto" chose bf16 on a CPU, and trains under it to a finite loss
        cfg = TrainConfig.from_dict({**SMALL, "steps": 2, "checkpoint_every": 0, "workers": 0})
        res = train(cfg, ShardSource(shard_urls([cifar_shards]), 32, 32, workers=0), tmp_path / f"native-{native}")
        assert math.isfinite(res.final_loss)
        assert ("precision bf16: this CPU does bf16 natively" in capsys.readouterr().out) is native
