"""The speedrun's recipes (bench/speedrun.py), one per method.

The default, BYOL with ResNet-18, CIFAR stem, batch 512, LARS): the published ResNet-18 CIFAR-10 runs
that report ~90% on this kNN protocol train 500-1000 epochs. Lightly's BYOL (kNN k=200, batch 512:
github.com/philippmwirth/byol) reports 0.85-0.86 after 200 epochs and 0.91 after 800; Lightly's benchmark
table gives SimCLR 0.889 and SwAV 0.902 at 800 epochs on that protocol; solo-learn's CIFAR-10 BYOL config
(scripts/pretrain/cifar/byol.yaml: LARS eta 0.02 with clip_lr, lr 1.0 per 256, weight decay 1e-5, warmup 10
epochs, projector/predictor 4096 -> 256, target momentum 0.99 -> 1, 1000 epochs) reaches 92.6% linear. BYOL
is the best of these at a given epoch count and does not need a large batch (no negatives). This recipe takes
solo-learn's: the project's LARS has no clip_lr, so its step is lr x eta = 0.02 of each weight's norm at the
peak (solo-learn's step whenever the clip does not bind), decaying with the cosine; SimCLR, MoCo v3 and VICReg
follow their solo-learn CIFAR configs the same way. The project's views are the papers' (no blur at 32 px, as
solo-learn's CIFAR augmentations). Expect roughly 500-800 epochs to 90%, and somewhat more than published on
this copy of CIFAR-10 (JPEG at quality ~75: ../shared/datasets/README.md). None of this is measured yet (no GPU
was lent when this was written); at an assumed 2-3 s per epoch on an H200 it is 20-40 minutes, hence the
45-minute default budget. If 90% is missed, the curve says whether to train longer (--budget-minutes, or
--epochs for a fixed schedule) or to change the recipe (--method, --lr, --eta, --batch).
"""

# Per method: optimiser, peak lr, LARS eta, weight decay, warmup (epochs), method options. From solo-learn's
# CIFAR configs (see the docstring); the peak LARS step is lr x eta = 0.02 of a weight's norm.
RECIPES = {
    "byol": dict(optimizer="lars", lr=1.0, eta=0.02, weight_decay=1e-5, warmup_epochs=10,
                 options={"hidden_dim": 4096, "proj_dim": 256, "momentum": 0.99}),
    "simclr": dict(optimizer="lars", lr=1.0, eta=0.02, weight_decay=1e-4, warmup_epochs=10,
                   options={"hidden_dim": 2048, "proj_dim": 256, "temperature": 0.2}),
    "mocov3": dict(optimizer="lars", lr=1.0, eta=0.02, weight_decay=1e-6, warmup_epochs=10,
                   options={"hidden_dim": 4096, "proj_dim": 256, "temperature": 0.2, "momentum": 0.99}),
    "vicreg": dict(optimizer="lars", lr=1.0, eta=0.02, weight_decay=1e-4, warmup_epochs=10,
                   options={"hidden_dim": 2048, "proj_dim": 2048, "crop_scale": [0.2, 1.0]}),
}
# Peak lr when --optimizer overrides the recipe's and --lr is not given.
OPTIMIZER_LR = {"lars": 1.0, "adamw": 2e-3, "sgd": 0.06}
