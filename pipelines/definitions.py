"""The code location: `dagster dev -w workspace.yaml` loads `defs` from here.

Settings come from SSLPIPE_* environment variables (pipelines/settings.py); `sslpipe run` exports them.
"""

from __future__ import annotations

import dagster as dg

from assets import BATCH_ASSETS, GLOBAL_ASSETS, TRAIN_ASSETS, batches, build_assets, build_checks
from data_contracts import load_contract
from pipelines.console_log import sslpipe_console
from pipelines.sensors import build_landing_sensor
from pipelines.settings import Settings, approval_mode, gate_defaults, resources_for, train_defaults

BATCH_JOB = "ingest_batch"
EVAL_JOB = "ingest_eval"
LEAKAGE_JOB = "check_eval_leakage"
TRAIN_JOB = "train_encoder"


def build_definitions(settings: Settings) -> dg.Definitions:
    contract = load_contract(settings.contract)
    eval_contract = load_contract(settings.eval_contract)
    ingest_batch = dg.define_asset_job(BATCH_JOB, selection=list(BATCH_ASSETS), partitions_def=batches,
                                       description="Ingest, validate, bias-check and shard one landing batch.")
    checks = build_checks(eval_contract)
    eval_sel = dg.AssetSelection.assets(*GLOBAL_ASSETS)
    ingest_eval = dg.define_asset_job(EVAL_JOB, selection=eval_sel - dg.AssetSelection.checks(*checks),
                                      description="Ingest the labeled eval set and run its contract checks.")
    train_encoder = dg.define_asset_job(TRAIN_JOB, selection=list(TRAIN_ASSETS),
                                        description="Pretrain an encoder on the shards of the accepted batches, "
                                                    "probe it on the eval set and register it in MLflow (the "
                                                    "champion/challenger gate decides its alias).")
    jobs = [ingest_batch, ingest_eval, train_encoder]
    if checks:
        jobs.append(dg.define_asset_job(LEAKAGE_JOB, selection=dg.AssetSelection.checks(*checks),
                                        description="Check that no eval image is in any training shard."))
    return dg.Definitions(
        assets=build_assets(contract, eval_contract, settings.shards, train_defaults(settings.train),
                            settings.probe, gate_defaults(settings.registry), approval_mode(settings.registry)),
        asset_checks=checks,
        jobs=jobs,
        sensors=[build_landing_sensor(ingest_batch)],
        resources=resources_for(settings),
        loggers={"console": dg.colored_console_logger, "sslpipe_console": sslpipe_console},
    )


defs = build_definitions(Settings.from_env())
