"""eval_images: the labeled evaluation set, ingested and contract-checked; its record (assets/records.EvalSet) goes
to eval_leakage, probe_report and registered_model."""

from collections import Counter

import dagster as dg

from assets.checks import check_result, check_specs
from assets.policies import IO_RETRY, failure
from assets.raw_images import INGEST_POOL, limits_from, progress_logger
from assets.records import EvalSet
from assets.resources import PipelineHome
from data_contracts import Contract
from data_contracts.ge_suite import VALIDATION_CHECKS, validate_manifest
from ssl_ops.escape import html_text
from ssl_ops.evalset import eval_digest, scan_eval
from ssl_ops.home import EVAL_BATCH
from ssl_ops.manifest import write_table_atomic


def build_eval_images(contract: Contract) -> dg.AssetsDefinition:

    @dg.asset(group_name="eval", code_version="1", kinds={"parquet"}, pool=INGEST_POOL, retry_policy=IO_RETRY,
              check_specs=check_specs(contract, "eval_images", VALIDATION_CHECKS),
              description=f"The labeled eval set (class folders or labels.csv), ingested and validated against "
                          f"{contract.label}. The leakage decision (eval_leakage) compares it with every training shard.")
    def eval_images(context: dg.AssetExecutionContext, home: PipelineHome):  # -> MaterializeResult with value=EvalSet
        h = home.paths()
        home.stage_eval(context.log)  # with a prefix: its eval/ copied here first
        if not h.eval_dir.is_dir():
            raise failure(f"eval folder {h.eval_dir} does not exist: put the labeled set there as class folders "
                             "(<class>/<image>) or as images + labels.csv (path,label[,group columns])")
        result = scan_eval(h.eval_dir, limits_from(contract), workers=home.workers or None,
                           progress=progress_logger(context.log, "eval_images"), links=contract.links)
        write_table_atomic(result.accepted, h.accepted_path(EVAL_BATCH))
        write_table_atomic(result.quarantine, h.quarantine_path(EVAL_BATCH))
        digest = eval_digest(result.accepted)
        outcome = validate_manifest(contract, result.accepted, h.report_dir(EVAL_BATCH) / "data_docs", EVAL_BATCH,
                                     escape=html_text)
        results = []
        for name in VALIDATION_CHECKS:
            if name in contract.checks:
                c = outcome.checks.get(name)
                results.append(check_result(contract, name, c.passed if c else True,
                                            c.summary() if c else f"{name}: no rule in the contract applies"))
        home.publish("manifests", EVAL_BATCH, context.log)
        home.publish("reports", EVAL_BATCH, context.log)
        labels = result.accepted.column("attr_label").to_pylist()
        per_class = dict(sorted(Counter(labels).items()))
        groups = [c.removeprefix("attr_") for c in result.accepted.column_names if c.startswith("attr_") and c != "attr_label"]
        return dg.MaterializeResult(
            value=EvalSet(digest=digest, manifest=str(h.accepted_path(EVAL_BATCH)), images=result.accepted.num_rows,
                          classes=len(per_class), groups=groups),
            data_version=dg.DataVersion(digest),
            check_results=results,
            metadata={"eval_digest": digest, "files_seen": result.seen, "accepted": result.accepted.num_rows,
                      "quarantined": result.quarantine.num_rows, "quarantine_reasons": result.reasons,
                      "labels_from": result.sidecar or "none", "classes": len(per_class), "per_class": per_class,
                      "group_attributes": groups,
                      "manifest": dg.MetadataValue.path(str(h.accepted_path(EVAL_BATCH))),
                      "data_docs": dg.MetadataValue.url(outcome.docs_index.resolve().as_uri()),
                      "dagster/row_count": result.accepted.num_rows},
        )

    return eval_images


