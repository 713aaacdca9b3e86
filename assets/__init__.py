"""Thin Dagster assets, checks and resources over ssl_ops and data_contracts. No real work happens here."""

from __future__ import annotations

import dagster as dg

from assets.bias_report import build_bias_report
from assets.eval_images import build_eval_images
from assets.image_shards import image_shards
from assets.partitions import batches
from assets.raw_images import build_raw_images
from assets.resources import PipelineHome
from assets.validated_images import build_validated_images
from data_contracts import Contract

BATCH_ASSETS = ("raw_images", "validated_images", "bias_report", "image_shards")
GLOBAL_ASSETS = ("eval_images",)


def build_assets(contract: Contract, eval_contract: Contract) -> list[dg.AssetsDefinition]:
    return [build_raw_images(contract), build_validated_images(contract), build_bias_report(contract), image_shards,
            build_eval_images(eval_contract)]


__all__ = ["BATCH_ASSETS", "GLOBAL_ASSETS", "PipelineHome", "batches", "build_assets"]
