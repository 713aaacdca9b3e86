"""Graph tests train tiny encoders: BASE_TRAIN (under every train section) is shrunk to 3 steps unless a test is marked
`real_train_defaults` (the demo test keeps the shipped default)."""

import pytest

TINY_TRAIN = {"method": "simclr", "backbone": "resnet18", "width": 8, "image_size": 32, "batch_size": 32, "steps": 3,
              "warmup_steps": 1, "workers": 0, "checkpoint_every": 0, "health_every": 1}


@pytest.fixture(autouse=True)
def tiny_training(request, monkeypatch):
    if request.node.get_closest_marker("real_train_defaults") is None:
        monkeypatch.setattr("pipelines.settings.BASE_TRAIN", TINY_TRAIN)
