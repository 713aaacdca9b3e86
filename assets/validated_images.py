"""validated_images[batch]: the contract's Great Expectations suite run on the batch manifest."""


import json

import dagster as dg

from assets.checks import check_result, check_specs
from assets.gates import write_checks
from assets.partitions import batches
from assets.resources import PipelineHome
from data_contracts import Contract
from data_contracts.ge_suite import VALIDATION_CHECKS, validate_manifest
from ssl_ops.escape import html_text
from ssl_ops.manifest import read_manifest, table_digest


def quarantine_reasons(h, batch: str) -> dict[str, int]:
    q = h.quarantine_path(batch)
    reasons: dict[str, int] = {}
    if q.is_file():
        for r in read_manifest(q, ["reason"]).column("reason").to_pylist():
            reasons[r] = reasons.get(r, 0) + 1
    return reasons


def build_validated_images(contract: Contract) -> dg.AssetsDefinition:
    @dg.asset(partitions_def=batches, group_name="data", code_version="1", deps=["raw_images"],
              kinds={"great_expectations"},
              check_specs=check_specs(contract, "validated_images", VALIDATION_CHECKS),
              description=f"The batch manifest validated against contract {contract.label} (Great Expectations); "
                          "data docs under reports/<batch>/data_docs.")
    def validated_images(context: dg.AssetExecutionContext, home: PipelineHome) -> dg.MaterializeResult:
        h = home.paths()
        batch = context.partition_key
        manifest = read_manifest(h.accepted_path(batch))
        docs = h.report_dir(batch) / "data_docs"
        outcome = validate_manifest(contract, manifest, docs_dir=docs, run_name=batch, escape=html_text)
        results = []
        for name in VALIDATION_CHECKS:
            if name not in contract.checks:
                continue
            c = outcome.checks.get(name)
            if c is None:
                results.append(check_result(contract, name, True, f"{name}: no rule in the contract applies"))
                continue
            failed = [e.__dict__ for e in c.expectations if not e.success]
            summary = c.summary()
            if name == "row_count" and not c.passed:
                summary += f" (quarantined in raw_images: {quarantine_reasons(h, batch) or 'nothing'})"
            results.append(check_result(contract, name, c.passed, summary, expectations=len(c.expectations),
                                        failed=dg.MetadataValue.json(json.loads(json.dumps(failed, default=str)))))
            if not c.passed:
                context.log.warning(f"validated_images[{batch}] {c.summary()}")
        digest = table_digest(manifest)
        write_checks(h, batch, "validated_images", digest, contract.label, results,
                     {n: contract.blocking(n) for n in contract.checks})
        summary = {n: {"passed": c.passed, "blocking": c.blocking, "summary": c.summary()} for n, c in outcome.checks.items()}
        (h.report_dir(batch) / "validation.json").write_text(json.dumps(
            {"batch": batch, "contract": contract.label, "contract_digest": contract.digest, "success": outcome.success,
             "statistics": outcome.statistics, "checks": summary}, indent=2, default=str))
        home.publish("reports", batch, context.log)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(f"{digest[:32]}-{contract.digest[:16]}"),
            check_results=results,
            metadata={"contract": contract.label, "contract_digest": contract.digest, "success": outcome.success,
                      "expectations": outcome.statistics.get("evaluated_expectations", 0),
                      "failed_expectations": outcome.statistics.get("unsuccessful_expectations", 0),
                      "data_docs": dg.MetadataValue.url(outcome.docs_index.resolve().as_uri()),  # %-encoded
                      "dagster/row_count": manifest.num_rows},
        )

    return validated_images
