"""registered_model: the latest encoder as a version of an MLflow registered model, with its probe report,
model card, plots, dataset inputs and lineage tags; alias `challenger`; when the gate passes
(ssl_ops.review.gate) alias `candidate`, and `champion` once a reviewer approves it (or at once with
`registry: {approval: auto}`). Each alias move is recorded (assets/mlflow_registry.py).

Everything is logged to the encoder's training run, so one MLflow run holds the training curves, the
probes and the model. Re-materializing with the same encoder registers nothing new.
"""

import contextlib
import dataclasses
import io
import json
import tempfile
from importlib import metadata as pkg_metadata
from pathlib import Path

import dagster as dg
import numpy as np

from assets.config import config_from_dataclass
from assets.lineage import batch_lineage, git_sha, leakage_finding
from assets.mlflow_registry import AUTO_REVIEWER, GATE_TAG, RUN_KEY_TAG, Registry
from assets.mlflow_tracking import MlflowTracking, quiet_mlflow
from assets.policies import TRACKING_RETRY, failure
from assets.records import EvalSet, LeakageDecision, ProbeResult, RegisteredVersion, TrainedEncoder
from assets.resources import PipelineHome
from ssl_ops.escape import MlflowKeys
from ssl_ops.home import EVAL_BATCH
from ssl_ops.manifest import read_manifest
from ssl_ops.probes.evalset import load_eval_arrays
from ssl_ops.review import GateConfig, decide, model_card
from ssl_ops.review.plots import label_fraction_curve, projection_plot, training_curves

CODE_VERSION = "1"
PYFUNC = Path(__file__).with_name("encoder_pyfunc.py")
SSL_OPS = Path(__file__).resolve().parent.parent / "ssl_ops"


def _requirements() -> list[str]:
    out = []
    for dist in ("torch", "numpy", "kornia", "webdataset", "pyarrow", "pillow"):
        try:
            out.append(f"{dist}=={pkg_metadata.version(dist).split('+')[0]}")
        except pkg_metadata.PackageNotFoundError:
            out.append(dist)
    return out


def build_registered_model(gate_defaults: dict | None = None, approval: str = "human") -> dg.AssetsDefinition:
    """approval: "human" (the gate's pass makes the version the `candidate`; `champion` moves when a reviewer
    approves it) or "auto" (the gate's pass moves `champion` as well, recorded as approved by AUTO_REVIEWER)."""
    GateRunConfig = config_from_dataclass(GateConfig, "GateRunConfig", gate_defaults)

    @dg.asset(group_name="training", code_version=CODE_VERSION, kinds={"mlflow"},
              retry_policy=TRACKING_RETRY,
              description="The latest encoder as a new version of the MLflow registered model (pyfunc returning "
                          "embeddings, signature, input example, model card, plots, dataset inputs, lineage tags), "
                          "alias challenger; the gate's pass makes it the candidate, and champion moves when a "
                          "reviewer approves (sslpipe approve), or at once with registry.approval: auto.")
    def registered_model(context: dg.AssetExecutionContext, config: GateRunConfig, home: PipelineHome,
                         mlflow: MlflowTracking, ssl_encoder: TrainedEncoder, probe_report: ProbeResult,
                         eval_images: EvalSet, eval_leakage: LeakageDecision) -> dg.MaterializeResult[RegisteredVersion]:
        # the server away (stopped, restarting, the network): one clear error naming it, retried (TRACKING_RETRY);
        # a retry finds the version an earlier attempt registered (by run key) and finishes it: never a duplicate
        with mlflow.server_errors("registered_model"):
            try:
                gate = config.to_library()
            except ValueError as e:
                raise failure(str(e)) from None
            h = home.paths()
            enc, ev = dataclasses.asdict(ssl_encoder), {"eval_digest": eval_images.digest}
            run_key = ssl_encoder.run_key
            if probe_report.run_key != run_key or probe_report.eval_digest != eval_images.digest:
                raise failure("registered_model: the probe report is of another encoder or eval set than ssl_encoder's "
                              "and eval_images' records; materialize probe_report first")
            report = json.loads(Path(probe_report.report).read_text())
            reg = Registry(mlflow)

            existing = reg.version_for(run_key)
            if existing is not None and GATE_TAG in existing.tags:
                context.log.info(f"registered_model: this encoder is already version {existing.version} of "
                                 f"{reg.name}; nothing new registered")
                return _materialization(reg, str(existing.version), json.loads(existing.tags[GATE_TAG]), run_key, enc,
                                        reused=True)

            champ = reg.alias("champion")
            if (str(champ.version) if champ else None) != report["champion_version"]:
                raise failure(f"registered_model: the champion is version {champ.version if champ else 'none'} but "
                                 f"the probe report compared version {report['champion_version'] or 'none'}; "
                                 "materialize probe_report again")
            batches = list(enc["batches"])
            leakage = leakage_finding(eval_leakage, ssl_encoder, eval_images.digest)
            decision = decide(report, gate, enc["method"], leakage)
            context.log.info(f"registered_model: gate on {decision.metric}: {decision.summary}")

            manifests, contracts = batch_lineage(h, batches)
            lineage = {"batches": batches, "shard_index_digests": dict(enc["shard_index_digests"]),
                       "manifest_digests": manifests, "contracts": contracts, "eval_digest": ev["eval_digest"],
                       "git_sha": git_sha(), "dagster_run_id": context.run_id, "run_key": run_key,
                       "mlflow_run_id": enc["mlflow_run_id"]}
            model_dir = h.model_dir(run_key)
            training = {**json.loads((model_dir / "result.json").read_text()), "samples": enc["samples"]}
            train_cfg = json.loads((model_dir / "config.json").read_text())
            train_cfg = train_cfg.get("train", train_cfg)

            if existing is None:
                version = _log_and_register(context, mlflow, reg, report, decision, gate, lineage, enc, ev, h,
                                            model_dir, home)
            else:  # registered by an attempt that died before the gate: finish it
                version = str(existing.version)
                context.log.info(f"registered_model: finishing version {version}, registered by an earlier attempt")
            card = model_card(reg.name, version, report, decision, training, train_cfg, lineage,
                              champion_version=str(champ.version) if champ else None, approval=approval)
            reg.client.update_model_version(reg.name, version, description=card[:60000])
            reg.client.log_text(enc["mlflow_run_id"], card, "model_card.md")
            reg.move_alias("challenger", version, f"registered by Dagster run {context.run_id}", context.run_id)
            if decision.passed:
                reg.move_alias("candidate", version, f"the gate passed: {decision.summary}", context.run_id,
                               action="gate")
                reg.set_review_state(version, "pending", None, f"the gate passed: {decision.summary}")
                if approval == "auto":
                    reg.approve(version, AUTO_REVIEWER,
                                f"registry.approval is auto; the gate passed: {decision.summary}",
                                context.run_id)
                    context.log.info(f"registered_model: version {version} is the champion (registry.approval: auto)")
                else:
                    context.log.info(f"registered_model: version {version} is the candidate, waiting for a reviewer: "
                                     f"sslpipe review {reg.name} / sslpipe approve {reg.name}@{version} --reason ...")
            else:
                reg.set_review_state(version, "gate_failed", None, decision.summary)
            record = decision.to_dict()
            reg.client.set_model_version_tag(reg.name, version, "sslpipe.gate_summary", decision.summary[:5000])
            reg.client.set_model_version_tag(reg.name, version, GATE_TAG, json.dumps(
                {"passed": decision.passed, "summary": decision.summary[:2000], "metric": decision.metric,
                 "against": decision.against, "config": decision.config,  # the margins review shows
                 # each check, for `sslpipe review` (a tag value holds 5000 characters)
                 "checks": [{"name": c["name"], "passed": bool(c["passed"]), "detail": str(c["detail"])[:300]}
                            for c in decision.checks[:8]]}))
            return _materialization(reg, version, record, run_key, enc, reused=False, card=card)

    return registered_model


def _log_and_register(context, mlflow: MlflowTracking, reg: Registry, report, decision, gate, lineage, enc, ev, h,
                      model_dir: Path, home: PipelineHome | None = None) -> str:
    """Log probes, plots, dataset inputs and the pyfunc model to the training run; register a version."""
    with mlflow.using(), quiet_mlflow():
        return _log_and_register_quietly(context, mlflow, reg, report, decision, gate, lineage, enc, ev, h, model_dir,
                                         home)


def _log_and_register_quietly(context, mlflow: MlflowTracking, reg: Registry, report, decision, gate, lineage, enc, ev,
                              h, model_dir: Path, home: PipelineHome | None = None) -> str:
    import mlflow as mf
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    run_id = enc["mlflow_run_id"]
    dim = report["model"]["dim"]

    # a couple of real eval images as the input example, at their stored size
    eval_table = read_manifest(h.accepted_path(EVAL_BATCH))
    data = load_eval_arrays(eval_table.slice(0, 2), h.eval_dir, enc["image_size"])
    example = data.images.permute(0, 2, 3, 1).numpy().astype(np.uint8)
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, -1))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, dim))]))
    metrics_rows = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    probes_path = model_dir / "probes.jsonl"  # the kNN probe in step with training (ssl_ops.train.monitor)
    probe_rows = [json.loads(x) for x in probes_path.read_text().splitlines() if x.strip()] if probes_path.is_file() else []

    with mf.start_run(run_id=run_id):
        mf.log_params({"probe_seed": report["split"]["seed"], "probe_test_fraction": report["split"]["test_fraction"],
                       **{f"gate_{k}": v for k, v in dataclasses.asdict(gate).items()},
                       "eval_digest": ev["eval_digest"]})
        log_probe_metrics(report, decision.passed)
        mf.set_tags({"sslpipe.eval_digest": ev["eval_digest"], "sslpipe.git_sha": lineage["git_sha"],
                     "sslpipe.registered_by_dagster_run": context.run_id,
                     "sslpipe.dagster_run_url": f"{mlflow.dagster_url.rstrip('/')}/runs/{context.run_id}"})
        for b in lineage["batches"]:  # the training data: shard indexes (digests), not images
            src = _source(home.shard_index_uri(b) if home and home.remote else h.shard_index_path(b).resolve().as_uri())
            mf.log_input(MetaDataset(src, name=f"shards/{b}", digest=lineage["shard_index_digests"][b][:36]),
                         context="training")
        store = home.store() if home else None
        eval_src = _source(store.uri(f"manifests/{EVAL_BATCH}/accepted.parquet") if store
                           else h.accepted_path(EVAL_BATCH).resolve().as_uri())
        mf.log_input(MetaDataset(eval_src, name="eval_images", digest=ev["eval_digest"][:36]), context="eval")
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "probe_report.json"
            p.write_text(json.dumps({k: v for k, v in report.items() if k != "projection"}, indent=1))
            mf.log_artifact(str(p), "evaluation")
        for fig, name in ((training_curves(metrics_rows, probe_rows), "training_curves.png"),
                          (label_fraction_curve(report), "accuracy_vs_label_fraction.png"),
                          (projection_plot(report), "eval_embeddings_2d.png")):
            mf.log_figure(fig, f"plots/{name}")
        info = mf.pyfunc.log_model(
            name="encoder_model", python_model=str(PYFUNC), artifacts={"encoder": str(model_dir / "encoder.pt")},
            code_paths=[str(SSL_OPS)], signature=signature, input_example=example,
            pip_requirements=_requirements(), tags={RUN_KEY_TAG: lineage["run_key"]})
    tags = {RUN_KEY_TAG: lineage["run_key"], "sslpipe.batches": ",".join(lineage["batches"]),
            "sslpipe.shard_index_digests": json.dumps(lineage["shard_index_digests"]),
            "sslpipe.manifest_digests": json.dumps(lineage["manifest_digests"]),
            "sslpipe.contract_versions": json.dumps(sorted(set(lineage["contracts"].values()))),
            "sslpipe.eval_digest": ev["eval_digest"], "sslpipe.git_sha": lineage["git_sha"],
            "dagster.run_id": context.run_id, "dagster.partitions": ",".join(lineage["batches"]),
            "sslpipe.method": enc["method"], "sslpipe.backbone": enc["backbone"],
            "sslpipe.dagster_run_url": f"{mlflow.dagster_url.rstrip('/')}/runs/{context.run_id}"}
    reg.ensure()
    with quiet_mlflow(), contextlib.redirect_stderr(io.StringIO()):  # its "Created version" lines; we log our own
        mv = mf.register_model(info.model_uri, reg.name, tags=tags)
    context.log.info(f"registered_model: registered {reg.name} version {mv.version} ({mlflow.version_url(mv.version)})")
    return str(mv.version)


KEYS_ARTIFACT = "evaluation/mlflow_keys.json"


def probe_metrics(report: dict, gate_passed: bool) -> tuple[dict[str, float], MlflowKeys]:
    """The probe report as MLflow metrics. Names built from the eval set's group columns and values go through
    ssl_ops.escape.MlflowKeys (`probe_group/<column>/<value>`, `probe_worst_group_gap/<column>`): any value
    gives a valid, distinct name, and `keys.mapping` records name -> original column and value."""
    keys = MlflowKeys()
    metrics = {}
    for name in ("model", "champion", "raw_pixels", "random_init"):
        t = report.get(name)
        if t is None:
            continue
        metrics.update({f"probe_{name}_{k}": t[k] for k in ("knn20", "knn200", "linear")})
        metrics.update({f"probe_{name}_linear_at_{float(f) * 100:g}pct": v["mean"]
                        for f, v in t["label_fractions"].items()})
    metrics.update({f"probe_health_{k}": v for k, v in report["health"].items()})
    for col, g in report["model"]["groups"].items():
        metrics[keys.key("probe_worst_group_gap", col)] = g["worst_group_gap"]
        metrics.update({keys.key("probe_group", col, v): a["accuracy"] for v, a in g["per_group"].items()})
    metrics["gate_passed"] = float(gate_passed)
    return {k: float(v) for k, v in metrics.items()}, keys


def log_probe_metrics(report: dict, gate_passed: bool) -> dict[str, dict]:
    """Log probe_metrics to the active MLflow run, with the key mapping as the artifact KEYS_ARTIFACT (and its
    path in the tag sslpipe.mlflow_keys); returns the mapping."""
    import mlflow as mf

    metrics, keys = probe_metrics(report, gate_passed)
    mf.log_metrics(metrics)
    mf.log_dict(keys.mapping, KEYS_ARTIFACT)  # metric name -> the group column and value it stands for
    mf.set_tag("sslpipe.mlflow_keys", KEYS_ARTIFACT)
    return keys.mapping


def _source(uri: str):
    """MLflow's dataset source for a URI (file://, s3://, ...): where the shard index or manifest lives."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": two equal local sources
        warnings.simplefilter("ignore", UserWarning)
        return resolve_dataset_source(uri)


def _materialization(reg: Registry, version: str, record: dict, run_key: str, enc: dict, reused: bool,
                     card: str | None = None) -> dg.MaterializeResult:
    champ = reg.alias("champion")
    md = {"model_name": reg.name, "version": str(version), "run_key": run_key,
          "champion_version": str(champ.version) if champ else "none", "gate_passed": bool(record.get("passed")),
          "review": reg.review_state(str(version)).get("status", "none"),
          "gate": record.get("summary", ""), "reused": reused,
          "model_version": dg.MetadataValue.url(reg.tracking.version_url(str(version))),
          "mlflow_run": dg.MetadataValue.url(enc["mlflow_run"]) if enc.get("mlflow_run") else "",
          "load_with": dg.MetadataValue.text(f'mlflow.pyfunc.load_model("models:/{reg.name}/{version}")'),
          "mlflow_ui": dg.MetadataValue.text(reg.tracking.ui_command())}
    if card:
        md["model_card"] = dg.MetadataValue.md(card)
    value = RegisteredVersion(model_name=reg.name, version=str(version), run_key=run_key,
                              gate_passed=bool(record.get("passed")), review=md["review"])
    return dg.MaterializeResult(value=value, data_version=dg.DataVersion(f"{reg.name}/{version}"), metadata=md)
