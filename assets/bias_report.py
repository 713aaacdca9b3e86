"""bias_report[batch]: group representation, drift against earlier batches, near duplicates (ssl_ops.bias); the
batch's sidecar attributes that the contract does not declare are listed with their shares as not checked."""


import dagster as dg

from assets.checks import check_result, check_specs
from assets.gates import write_checks
from assets.partitions import batches, earlier_batches
from assets.resources import PipelineHome
from data_contracts import Contract
from ssl_ops.bias import bias_report as make_report
from ssl_ops.manifest import read_manifest, table_digest
from ssl_ops.pixel_match import FolderSource

BIAS_CHECKS = ("group_representation", "attribute_drift", "image_drift", "near_duplicates")


def build_bias_report(contract: Contract) -> dg.AssetsDefinition:
    b = contract.bias
    groups = {g: (r.min_share, r.values) for g, r in contract.groups.items()}

    @dg.asset(partitions_def=batches, group_name="data", code_version="1", deps=["raw_images", "validated_images"],
              check_specs=check_specs(contract, "bias_report", BIAS_CHECKS),
              description="Representation of group attributes against the contract's minimum shares, drift of "
                          "attributes and image statistics against earlier batches, near-duplicate clusters. "
                          "reports/<batch>/bias.json and bias.md.")
    def bias_report(context: dg.AssetExecutionContext, home: PipelineHome) -> dg.MaterializeResult:
        h = home.paths()
        batch = context.partition_key
        manifest = read_manifest(h.accepted_path(batch))
        ref_batches = earlier_batches(context.instance, batch)[-b.reference_batches:] if b.reference_batches else []
        reference = home.manifests(ref_batches)
        sources = {"batch": FolderSource(h.batch_dir(batch)), "reference": FolderSource(h.batch_dir)}  # confirm pHash pairs
        report = make_report(batch, manifest, reference, b, groups, sources, declared=contract.required_attributes)
        out = h.report_dir(batch)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bias.json").write_text(report.to_json())
        md = report.to_markdown()
        (out / "bias.md").write_text(md)
        flags = report.flags
        results = [check_result(contract, c, not flags[c], report.findings(c)) for c in BIAS_CHECKS if c in contract.checks]
        write_checks(h, batch, "bias_report", table_digest(manifest), contract.label, results,
                     {n: contract.blocking(n) for n in contract.checks})
        for c in BIAS_CHECKS:
            if flags[c]:
                context.log.warning(f"bias_report[{batch}] {c}: {report.findings(c)}")
        for u in report.unchecked:  # in the metadata, not in the contract: said, never silently ignored
            context.log.warning(f"bias_report[{batch}] attribute {u.describe()}")
        home.publish("reports", batch, context.log)
        return dg.MaterializeResult(
            check_results=results,
            metadata={"report": dg.MetadataValue.md(md), "flags": flags,
                      "reference_batches": report.reference_batches, "reference_images": report.reference_images,
                      "near_duplicate_share": round(report.near_duplicates.share, 4),
                      "unchecked_attributes": [u.attribute for u in report.unchecked],
                      "json": dg.MetadataValue.path(str(out / "bias.json"))},
        )

    return bias_report
