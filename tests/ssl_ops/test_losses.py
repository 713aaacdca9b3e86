"""Each SSL loss against an independent numpy computation of its paper's formula on the same inputs."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ssl_ops.losses import (barlow_twins_loss, byol_loss, dino_loss, mae_loss, mocov3_loss, nt_xent_loss,
                            update_center, vicreg_loss)

rng = np.random.default_rng(0)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_nt_xent():
    z1, z2, temp = rng.normal(size=(6, 8)), rng.normal(size=(6, 8)), 0.3
    z = unit(np.concatenate([z1, z2]))
    n2, losses = 12, []
    for i in range(n2):
        p = (i + 6) % n2
        s = z @ z[i] / temp
        denom = sum(np.exp(s[k]) for k in range(n2) if k != i)
        losses.append(-np.log(np.exp(s[p]) / denom))
    assert nt_xent_loss(t(z1), t(z2), temp).item() == pytest.approx(np.mean(losses), rel=1e-9)


def test_byol():
    p, z = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    ref = np.mean(np.sum((unit(p) - unit(z)) ** 2, axis=1))  # ||p/|p| - z/|z| ||^2 = 2 - 2 cos
    assert byol_loss(t(p), t(z)).item() == pytest.approx(ref, rel=1e-9)
    zt = t(z).requires_grad_()
    byol_loss(t(p).requires_grad_(), zt).backward()
    assert zt.grad is None  # the target gets no gradient


def test_mocov3():
    q, k, temp = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)), 0.2
    logits = unit(q) @ unit(k).T / temp
    ref = np.mean([-(logits[i, i] - np.log(np.exp(logits[i]).sum())) for i in range(5)]) * 2 * temp
    assert mocov3_loss(t(q), t(k), temp).item() == pytest.approx(ref, rel=1e-9)


def test_dino_and_its_center():
    n, kdim = 4, 6
    student = [rng.normal(size=(n, kdim)) for _ in range(4)]  # 2 global + 2 local views
    teacher = [rng.normal(size=(n, kdim)) for _ in range(2)]
    center = rng.normal(size=(1, kdim)) * 0.1

    def softmax(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    total, pairs = 0.0, 0
    for ti, tv in enumerate(teacher):
        pt = softmax((tv - center) / 0.04)
        for si, sv in enumerate(student):
            if si != ti:
                total += np.mean(-np.sum(pt * np.log(softmax(sv / 0.1)), axis=1))
                pairs += 1
    got = dino_loss([t(s) for s in student], [t(x) for x in teacher], t(center), 0.1, 0.04)
    assert pairs == 6 and got.item() == pytest.approx(total / pairs, rel=1e-9)
    new = update_center(t(center), [t(x) for x in teacher], momentum=0.9)
    assert np.allclose(new.numpy(), 0.9 * center + 0.1 * np.concatenate(teacher).mean(axis=0, keepdims=True))


def test_vicreg():
    z1, z2 = rng.normal(size=(16, 5)), rng.normal(size=(16, 5)) * 0.3

    def var_term(z):
        return np.mean(np.maximum(0, 1 - np.sqrt(z.var(axis=0, ddof=1) + 1e-4)))

    def cov_term(z):
        c = np.cov(z, rowvar=False)
        return (np.sum(c ** 2) - np.sum(np.diag(c) ** 2)) / z.shape[1]

    ref = 25 * np.mean((z1 - z2) ** 2) + 25 * (var_term(z1) + var_term(z2)) + 1 * (cov_term(z1) + cov_term(z2))
    assert vicreg_loss(t(z1), t(z2)).item() == pytest.approx(ref, rel=1e-9)


def test_barlow_twins():
    z1, z2, lam = rng.normal(size=(32, 6)), rng.normal(size=(32, 6)), 0.0051
    a = (z1 - z1.mean(0)) / z1.std(0)
    b = (z2 - z2.mean(0)) / z2.std(0)
    c = np.einsum("ni,nj->ij", a, b) / 32
    ref = sum((1 - c[i, i]) ** 2 for i in range(6)) + lam * sum(c[i, j] ** 2 for i in range(6) for j in range(6) if i != j)
    assert barlow_twins_loss(t(z1), t(z2), lam).item() == pytest.approx(ref, rel=1e-9)


def test_mae_only_counts_removed_patches():
    pred, target = rng.normal(size=(2, 5, 12)), rng.normal(size=(2, 5, 12)) * 3 + 1
    mask = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 1, 1]])
    norm = (target - target.mean(-1, keepdims=True)) / np.sqrt(target.var(-1, ddof=1, keepdims=True) + 1e-6)
    per = ((pred - norm) ** 2).mean(-1)
    assert mae_loss(t(pred), t(target), torch.tensor(mask)).item() == pytest.approx((per * mask).sum() / mask.sum())
    raw = ((pred - target) ** 2).mean(-1)
    assert mae_loss(t(pred), t(target), torch.tensor(mask), norm_pix=False).item() == pytest.approx(
        (raw * mask).sum() / mask.sum())


def _rank(rank, world, port, z1, z2, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    n = z1.shape[0] // world
    part = slice(rank * n, (rank + 1) * n)
    a, b = z1[part].clone().requires_grad_(), z2[part].clone().requires_grad_()
    loss = nt_xent_loss(a, b, 0.2, gather=True)
    loss.backward()
    out[rank] = torch.tensor([loss.item(), mocov3_loss(z1[part], z2[part], 0.2, gather=True).item()], dtype=torch.float64)
    dist.destroy_process_group()


def test_gathered_losses_under_ddp_match_one_process_on_the_whole_batch():
    z1, z2 = torch.randn(8, 5, dtype=torch.float64), torch.randn(8, 5, dtype=torch.float64)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_rank, args=(2, port, z1, z2, out), nprocs=2, join=True)
    per_rank = torch.stack([out[0], out[1]])
    assert per_rank[:, 0].mean().item() == pytest.approx(nt_xent_loss(z1, z2, 0.2).item(), rel=1e-9)
    assert per_rank[:, 1].mean().item() == pytest.approx(mocov3_loss(z1, z2, 0.2).item(), rel=1e-9)
    assert per_rank[0, 0] != per_rank[1, 0]  # each rank has its own anchors
