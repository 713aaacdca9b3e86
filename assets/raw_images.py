"""raw_images[batch]: scan a landing folder into an accepted manifest and a quarantine table (ssl_ops.ingest)."""


import dagster as dg

from assets.gates import blocking_failures
from assets.partitions import batches
from assets.policies import IO_RETRY, failure
from assets.resources import PipelineHome
from data_contracts import Contract
from ssl_ops.ingest import ImageLimits, scan_batch
from ssl_ops.ingest.prior import PriorManifests
from ssl_ops.manifest import table_digest, write_table_atomic


INGEST_POOL = "sslpipe_ingest"  # limit 1, set in the instance's dagster.yaml (pipelines/settings.py)


def limits_from(contract: Contract) -> ImageLimits:
    im = contract.images
    return ImageLimits(min_side=im.min_side, max_side=im.max_side, max_pixels=im.max_pixels, max_bytes=im.max_bytes,
                       formats=im.formats, modes=im.modes)


def progress_logger(log, what: str, every: float = 0.1):
    """A (done, total) callback that logs every `every` of the way."""
    state = {"next": every}

    def report(done: int, total: int) -> None:
        if total and done / total >= state["next"]:
            log.info(f"{what}: {done}/{total} files ({done / total:.0%})")
            state["next"] = (done / total // every + 1) * every

    return report


def build_raw_images(contract: Contract) -> dg.AssetsDefinition:
    # pool: one ingestion at a time across runs (sensor, backfills), so that two batches never take the same image
    # at once, and the cores are not shared by two scans.
    @dg.asset(partitions_def=batches, group_name="data", code_version="1", kinds={"parquet"}, pool=INGEST_POOL,
              retry_policy=IO_RETRY,
              description="Every file of a landing batch: sha256, bytes, format, size, mode, pHash and sidecar "
                          "attributes in manifests/<batch>/accepted.parquet; every rejected file in "
                          "quarantine.parquet with its reason. accepted + quarantined = files seen.")
    def raw_images(context: dg.AssetExecutionContext, home: PipelineHome) -> dg.MaterializeResult:
        h = home.paths()
        batch = context.partition_key
        folder = home.stage_batch(batch, context.log)  # with a prefix: its landing/<batch>/ copied here first
        if not folder.is_dir() or (home.remote and not any(folder.iterdir())):
            raise failure(f"landing folder {home.landing_label}/{batch} for batch {batch!r} is missing; it was "
                          f"registered as a partition but its files are gone. Restore it, or delete the partition.")
        # Duplicates are checked against every other batch already ingested, whatever the order batches run in (a
        # backfill from the UI need not follow arrival order): an image belongs to the batch that ingested it first,
        # and re-ingesting either batch later keeps it there (the other quarantined it). One ingestion runs at a
        # time (pool INGEST_POOL), so two batches never take the same image at once. Batches that a blocking check
        # rejected do not count: their images may land again, fixed.
        prior_batches = [b for b in context.instance.get_dynamic_partitions(batches.name)
                         if b != batch and h.accepted_path(b).is_file() and not blocking_failures(h, b)]
        prior = PriorManifests({b: h.accepted_path(b) for b in prior_batches})  # one manifest in memory at a time
        result = scan_batch(folder, batch, limits_from(contract), prior=prior, workers=home.workers or None,
                            progress=progress_logger(context.log, f"raw_images[{batch}]"), links=contract.links)
        acc, quar = result.accepted.num_rows, result.quarantine.num_rows
        if result.metadata_without_file:
            context.log.warning(f"raw_images[{batch}]: {len(result.metadata_without_file)} row(s) of {result.sidecar} "
                                f"name no file of the batch (their attributes are unused), e.g. "
                                f"{', '.join(repr(p) for p in result.metadata_without_file[:3])}")
        if acc + quar != result.seen:  # the invariant users rely on: nothing is silently dropped
            raise failure(f"accounting error in batch {batch!r}: {acc} accepted + {quar} quarantined != {result.seen} seen")
        write_table_atomic(result.accepted, h.accepted_path(batch))
        write_table_atomic(result.quarantine, h.quarantine_path(batch))
        digest = table_digest(result.accepted)
        home.publish("manifests", batch, context.log)
        context.log.info(f"raw_images[{batch}]: {result.seen} files seen, {acc} accepted, {quar} quarantined "
                         f"{result.reasons} in {result.seconds:.1f}s")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(digest),
            metadata={
                "files_seen": result.seen, "accepted": acc, "quarantined": quar,
                "accounted_for": acc + quar == result.seen,
                "quarantine_reasons": result.reasons,
                "sidecar": result.sidecar or "none",
                "attributes": [c.removeprefix("attr_") for c in result.accepted.column_names if c.startswith("attr_")],
                "files_without_metadata": len(result.files_without_metadata),
                "metadata_rows_without_file": result.metadata_without_file[:50],
                "other_batches_checked_for_duplicates": len(prior_batches),
                "images_per_second": round(result.seen / max(result.seconds, 1e-9), 1),
                "manifest": dg.MetadataValue.path(str(h.accepted_path(batch))),
                "quarantine": dg.MetadataValue.path(str(h.quarantine_path(batch))),
                "manifest_digest": digest,
                "dagster/row_count": acc,
            },
        )

    return raw_images
