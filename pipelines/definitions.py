"""The code location: `dagster dev -w workspace.yaml` loads `defs` from here.

Settings come from SSLPIPE_* environment variables (pipelines/settings.py); `sslpipe run` exports them.

Jobs (the same ones `sslpipe run`, the sensors, the schedule and the UI start):
    ingest_eval        eval_images
    ingest_batch       raw_images -> validated_images, bias_report -> image_shards, per batch partition
    train_encoder      eval_leakage -> ssl_encoder -> probe_report -> registered_model
    check_eval_leakage eval_leakage alone
The order between them is the assets' declared dependencies (image_shards on eval_images, eval_leakage on
every image_shards partition, ssl_encoder on eval_leakage); blocking checks stop what depends on them.
Every job runs its steps in one process (in_process_executor): steps are heavy (torch, ingestion pools) and
one process per step would import torch once per step.
"""

from __future__ import annotations

import dagster as dg

from assets import BATCH_ASSETS, GLOBAL_ASSETS, TRAIN_ASSETS, build_assets
from data_contracts import load_contract
from pipelines.console_log import sslpipe_console
from pipelines.sensors import build_landing_sensor, build_retrain_schedule, build_retrain_sensor
from pipelines.settings import Settings, approval_mode, gate_defaults, resources_for, train_defaults

BATCH_JOB = "ingest_batch"
EVAL_JOB = "ingest_eval"
LEAKAGE_JOB = "check_eval_leakage"
TRAIN_JOB = "train_encoder"
JOB_ASSETS = {EVAL_JOB: GLOBAL_ASSETS, BATCH_JOB: BATCH_ASSETS, TRAIN_JOB: TRAIN_ASSETS}  # every asset in one


def build_definitions(settings: Settings) -> dg.Definitions:
    contract = load_contract(settings.contract)
    eval_contract = load_contract(settings.eval_contract)
    ingest_batch = dg.define_asset_job(BATCH_JOB, selection=list(BATCH_ASSETS),
                                       description="Ingest, validate, bias-check and shard one landing batch.")
    ingest_eval = dg.define_asset_job(EVAL_JOB, selection=list(GLOBAL_ASSETS),
                                      description="Ingest the labeled eval set and run its contract checks.")
    train_encoder = dg.define_asset_job(TRAIN_JOB, selection=list(TRAIN_ASSETS),
                                        description="Decide leakage (blocking), pretrain an encoder on the shards of the "
                                                    "accepted batches, probe it on the eval set and register it in "
                                                    "MLflow (the gate's pass makes it the candidate).")
    check_leakage = dg.define_asset_job(LEAKAGE_JOB, selection=["eval_leakage"],
                                        description="Decide whether any eval image is in a training shard.")
    auto = settings.auto
    schedule = build_retrain_schedule(TRAIN_JOB, auto)
    return dg.Definitions(
        assets=build_assets(contract, eval_contract, settings.shards, train_defaults(settings.train),
                            settings.probe, gate_defaults(settings.registry), approval_mode(settings.registry)),
        jobs=[ingest_batch, ingest_eval, train_encoder, check_leakage],
        sensors=[build_landing_sensor(ingest_batch, ingest_eval, auto),
                 build_retrain_sensor(TRAIN_JOB, auto, train_defaults(settings.train))],
        schedules=[schedule] if schedule else [],
        resources=resources_for(settings),
        executor=dg.in_process_executor,
        loggers={"console": dg.colored_console_logger, "sslpipe_console": sslpipe_console},
    )


defs = build_definitions(Settings.from_env())
