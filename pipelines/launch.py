"""Runs through the instance, with the code location's origin, executed in this process.

`sslpipe run` has no daemon to hand runs to (the embedded default), so it executes them itself; but it
creates each run in the instance as the webserver or the daemon would: with the origin of the code location
of workspace.yaml (location `sslpipe`, module pipelines.definitions). So each run shows in the UI like any
other, and can be re-executed or backfilled from there ("Re-execute" finds the job through that origin).
Job execution.execute_in_process records no origin, and the UI cannot re-execute such runs.

    run = create_run(instance, defs, "ingest_batch", partition="b1", assets=["raw_images"], run_config={...})
    result = execute(instance, defs, run)       # JobExecutionResult: success, all_events, check evaluations
"""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import (ManagedGrpcPythonEnvCodeLocationOrigin, RemoteJobOrigin,
                                         RemoteRepositoryOrigin)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

LOCATION = "sslpipe"  # the location_name in workspace.yaml
MODULE = "pipelines.definitions"  # the module workspace.yaml loads, and its attribute
ATTRIBUTE = "defs"
REPOSITORY = "__repository__"  # the one repository of a Definitions object
ROOT = Path(__file__).resolve().parent.parent  # workspace.yaml's working_directory


def origins(job_name: str) -> tuple[RemoteJobOrigin, object]:
    """(the origin the webserver and daemon give this job's runs, the job's Python origin)."""
    target = LoadableTargetOrigin(executable_path=sys.executable, module_name=MODULE, working_directory=str(ROOT),
                                  attribute=None)
    location = ManagedGrpcPythonEnvCodeLocationOrigin(loadable_target_origin=target, location_name=LOCATION)
    remote = RemoteJobOrigin(repository_origin=RemoteRepositoryOrigin(code_location_origin=location,
                                                                      repository_name=REPOSITORY), job_name=job_name)
    python = ReconstructableRepository.for_module(MODULE, ATTRIBUTE, working_directory=str(ROOT)) \
        .get_reconstructable_job(job_name).get_python_origin()
    return remote, python


def create_run(instance: dg.DagsterInstance, defs: dg.Definitions, job_name: str, partition: str | None = None,
               assets: list[str] | None = None, run_config: dict | None = None, tags: dict | None = None,
               run_id: str | None = None):
    """Create (not start) a run of the job, for `assets` (None: the job's whole selection), in the instance."""
    job = defs.resolve_job_def(job_name)
    keys = frozenset(dg.AssetKey(a) for a in assets) if assets else None
    all_tags = {**job.run_tags, **(tags or {})}
    if partition is not None:
        with partition_loading_context(dynamic_partitions_store=instance) as ctx:
            job.validate_partition_key(partition, selected_asset_keys=keys, context=ctx)
        all_tags.update(job.get_tags_for_partition_key(partition, selected_asset_keys=keys))
    remote, python = origins(job_name)
    return instance.create_run_for_job(job, run_id=run_id, run_config=run_config or {}, tags=all_tags,
                                       asset_selection=keys, remote_job_origin=remote, job_code_origin=python)


def execute(instance: dg.DagsterInstance, defs: dg.Definitions, run):
    """Execute a created run here, with the job's executor (in-process; retries honoured)."""
    return execute_run(InMemoryJob(defs.resolve_job_def(run.job_name)), run, instance, raise_on_error=False)
