"""probe_report: the latest encoder's frozen features probed on the eval set, beside raw pixels, a randomly
initialised encoder and (when one is registered) the champion, all on one seeded split (ssl_ops.probes).

The report is a JSON file under models/<run key>/probe/, keyed by what it depends on (encoder, eval set,
champion version, probe config, code): re-materializing with nothing changed reuses it.
"""

import hashlib
import json
import time

import dagster as dg

from assets.config import config_from_dataclass
from assets.mlflow_registry import RUN_KEY_TAG, Registry
from assets.mlflow_tracking import MlflowTracking
from assets.policies import TRACKING_RETRY, failure
from assets.records import EvalSet, ProbeResult, TrainedEncoder
from assets.resources import PipelineHome
from ssl_ops.home import EVAL_BATCH
from ssl_ops.manifest import read_manifest
from ssl_ops.probes.evalset import load_eval_arrays
from ssl_ops.probes.report import ProbeConfig, probe_report as run_probes
from ssl_ops.review.card import probe_table
from ssl_ops.train.checkpoint import load_encoder

CODE_VERSION = "2"  # 2: every encoder probed at its own input size; per-row group values


def build_probe_report(probe_defaults: dict | None = None) -> dg.AssetsDefinition:
    ProbeRunConfig = config_from_dataclass(ProbeConfig, "ProbeRunConfig", probe_defaults)

    @dg.asset(group_name="training", code_version=CODE_VERSION, kinds={"pytorch"}, retry_policy=TRACKING_RETRY,
              description="kNN (k=20, 200) and linear probes of the latest encoder's frozen features on the eval "
                          "set with 1%/10%/100% of the labels, per-group accuracy, bootstrap intervals and health, "
                          "beside raw pixels, a random-init encoder and the registered champion on the same split.")
    def probe_report(context: dg.AssetExecutionContext, config: ProbeRunConfig, home: PipelineHome,
                     mlflow: MlflowTracking, ssl_encoder: TrainedEncoder, eval_images: EvalSet) -> dg.MaterializeResult[ProbeResult]:
        try:
            pcfg = config.to_library()
        except ValueError as e:
            raise failure(str(e)) from None
        h = home.paths()
        enc, run_key, eval_digest = ssl_encoder, ssl_encoder.run_key, eval_images.digest

        reg = Registry(mlflow)
        with mlflow.server_errors("probe_report"):  # the server away: one clear error, retried (TRACKING_RETRY)
            champ = reg.alias("champion")
        champ_key = champ.tags.get(RUN_KEY_TAG) if champ else None
        if champ is not None and champ_key == run_key:
            context.log.info(f"probe_report: this encoder is the champion (version {champ.version}); not compared "
                             "with itself")
            champ = None
        key = hashlib.sha256(json.dumps({"code": CODE_VERSION, "run_key": run_key, "eval": eval_digest,
                                         "champion": [str(champ.version), champ_key] if champ else None,
                                         "probe": pcfg.__dict__}, sort_keys=True).encode()).hexdigest()[:16]
        path = h.model_dir(run_key) / "probe" / f"{key}.json"
        if path.is_file():
            context.log.info(f"probe_report: reusing {path} (same encoder, eval set, champion and config)")
            report = json.loads(path.read_text())
        else:
            say = lambda msg: context.log.info(f"probe_report: {msg}")  # noqa: E731
            t0 = time.perf_counter()
            encoder, meta = load_encoder(enc.encoder)  # only when probing: a reused report needs no weights
            # decoded at the encoder's own size; the champion's at its own, from the files (EvalArrays.at_size)
            data = load_eval_arrays(read_manifest(h.accepted_path(EVAL_BATCH)), h.eval_dir, meta["image_size"])
            say(f"decoded {len(data.labels)} eval images at {meta['image_size']} px ({time.perf_counter() - t0:.1f} s)")
            champion = None
            if champ is not None:
                t0 = time.perf_counter()
                with mlflow.server_errors("probe_report: loading the champion"):
                    champion = reg.load_encoder(str(champ.version))
                say(f"loaded the champion, version {champ.version} ({champion[1]['image_size']} px input; "
                    f"{time.perf_counter() - t0:.1f} s)")
            context.log.info(f"probe_report: {len(data.labels)} eval images, {len(data.classes)} classes, groups "
                             f"{sorted(data.groups) or 'none'}; champion: "
                             f"{'version ' + str(champ.version) if champ else 'none registered'}")
            report = run_probes(encoder, meta, data, seed=pcfg.seed, test_fraction=pcfg.test_fraction,
                                draws=pcfg.draws, champion=champion,
                                progress=say)
            report.update({"run_key": run_key, "eval_digest": eval_digest, "method": enc.method,
                           "champion_version": str(champ.version) if champ else None, "probe_config": pcfg.__dict__})
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(report))
            tmp.replace(path)
        m = report["model"]
        return dg.MaterializeResult(
            value=ProbeResult(key=key, report=str(path), run_key=run_key, eval_digest=eval_digest,
                              champion_version=report["champion_version"]),
            data_version=dg.DataVersion(key),
            metadata={
                "report": dg.MetadataValue.path(str(path)), "run_key": run_key, "eval_digest": eval_digest,
                "champion_version": report["champion_version"] or "none",
                "linear": round(m["linear"], 4), "knn20": round(m["knn20"], 4), "knn200": round(m["knn200"], 4),
                "raw_pixels_linear": round(report["raw_pixels"]["linear"], 4),
                "random_init_linear": round(report["random_init"]["linear"], 4),
                **{f"health_{k}": round(v, 4) for k, v in report["health"].items()},
                "probes": dg.MetadataValue.md(probe_table(report)),
            })

    return probe_report
