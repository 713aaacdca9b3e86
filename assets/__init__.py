"""Thin Dagster assets, checks and resources over ssl_ops and data_contracts. No real work happens here."""

from __future__ import annotations

import dagster as dg

from assets.bias_report import build_bias_report
from assets.eval_images import build_eval_images
from assets.eval_leakage import build_eval_leakage
from assets.image_shards import build_image_shards
from assets.mlflow_tracking import MlflowTracking
from assets.partitions import batches
from assets.probe_report import build_probe_report
from assets.raw_images import build_raw_images
from assets.records import RecordIOManager
from assets.registered_model import build_registered_model
from assets.resources import PipelineHome
from assets.ssl_encoder import build_ssl_encoder
from assets.train_launch import InProcessTraining, TorchrunTraining, TrainLauncher
from assets.validated_images import build_validated_images
from data_contracts import Contract

BATCH_ASSETS = ("raw_images", "validated_images", "bias_report", "image_shards")  # partitioned by batch
GLOBAL_ASSETS = ("eval_images",)
TRAIN_ASSETS = ("eval_leakage", "ssl_encoder", "probe_report", "registered_model")


def build_assets(contract: Contract, eval_contract: Contract, shard_defaults: dict | None = None,
                 train_defaults: dict | None = None, probe_defaults: dict | None = None,
                 gate_defaults: dict | None = None, approval: str = "human") -> list[dg.AssetsDefinition]:
    """train_defaults: the train section (TrainConfig keys plus the window keys batches, last_batches);
    probe_defaults: ssl_ops.probes.report.ProbeConfig keys; gate_defaults: ssl_ops.review.GateConfig keys."""
    return [build_raw_images(contract), build_validated_images(contract), build_bias_report(contract),
            build_image_shards(eval_contract, shard_defaults, links=contract.links), build_eval_images(eval_contract),
            build_eval_leakage(eval_contract), build_ssl_encoder(train_defaults, contract.images.orientation_sensitive,
                                                              probe_defaults), build_probe_report(probe_defaults),
            build_registered_model(gate_defaults, approval)]


__all__ = ["BATCH_ASSETS", "GLOBAL_ASSETS", "TRAIN_ASSETS", "InProcessTraining", "MlflowTracking", "PipelineHome",
           "RecordIOManager", "TorchrunTraining", "TrainLauncher", "batches", "build_assets"]
