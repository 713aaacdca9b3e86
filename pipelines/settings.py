"""Settings and the environment: chosen here, in one place, from arguments or SSLPIPE_* variables.

    SSLPIPE_HOME           all local state (default ./.sslpipe)
    SSLPIPE_LANDING        landing folder (default $SSLPIPE_HOME/landing)
    SSLPIPE_EVAL           labeled eval set (default $SSLPIPE_HOME/eval)
    SSLPIPE_CONTRACT       contract for landing batches: a shipped name or a YAML path (default unlabeled_images)
    SSLPIPE_EVAL_CONTRACT  contract for the eval set (default eval_images)
    SSLPIPE_ENV            environment: "local" (default) or "production" (pipelines/deployment.py: the config
                           file's `deployment:` section says which servers and storage)
    SSLPIPE_WORKERS        ingestion processes, 0 = all cores (default 0)
    SSLPIPE_CONFIG         a YAML config file (see Settings.with_config_file), applied over the above
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import dagster as dg
import yaml

from assets import InProcessTraining, MlflowTracking, PipelineHome, RecordIOManager, TorchrunTraining
from pipelines.deployment import Deployment, DeploymentError, parse_deployment
from ssl_ops.home import Home
from ssl_ops.shards import ShardConfig

CONFIG_KEYS = {"contract", "eval_contract", "workers", "shards", "train", "probe", "registry", "automation",
               "deployment"}
# The `automation:` section: what runs with no one starting it (in the dagster-daemon, or `dagster dev`).
DEFAULT_AUTOMATION = {
    "landing_sensor": "stopped",  # default status of landing_sensor: each complete new batch folder is ingested
    "retrain_sensor": "stopped",  # default status of retrain_sensor: retrain when enough new images passed checks
    "retrain_schedule": "stopped",  # default status of retrain_schedule (only when retrain_cron is set)
    "retrain_cron": None,  # e.g. "0 3 * * *": also retrain on this schedule (nothing new: the encoder is reused)
    "min_new_images": 1000,  # newly accepted, sharded images since the data of the latest trained encoder
    "quiet_seconds": 60,  # a batch folder without _READY is complete when nothing in it changed for this long
    "sensor_interval_seconds": 30,  # how often the daemon evaluates the sensors
    "timezone": "UTC",  # of retrain_cron
}
STATUSES = ("running", "stopped")
DEFAULT_MODEL_NAME = "ssl-encoder"
# registry.approval: "human" (the default): the gate's pass makes a version the `candidate`, and `champion` moves
# only when a reviewer approves it (`sslpipe approve`); "auto": the gate's pass moves `champion` too (the demo).
APPROVAL_MODES = ("human", "auto")
DEFAULT_APPROVAL = "human"
REGISTRY_KEYS = ("model_name", "approval")  # the registry section's keys that are not GateConfig fields
WINDOW_KEYS = ("batches", "last_batches")  # in the train section: which batches ssl_encoder trains on
# The pipeline's default training is ssl_ops.train.TrainConfig's own defaults (each with its comment and unit),
# fitted to the data and the device when it runs (ssl_ops.train.recipe): a config file's `train:` section is
# applied over them (keys of TrainConfig, plus WINDOW_KEYS). The demo passes its digits recipe
# (ssl_ops.demo_data.DEMO_TRAIN) the same way. BASE_TRAIN lies under the section: empty, except in the tests,
# which shrink training to a few steps.
BASE_TRAIN: dict = {}


class SettingsError(ValueError):
    """Bad settings or config file; the message says what to fix."""


def _env_only(env: str) -> Deployment:
    """SSLPIPE_ENV alone: "local" is complete; "production" still needs the config's deployment section (checked
    where its servers are first needed, so that `--config FILE` given after the environment can supply it)."""
    if env == "local":
        return Deployment()
    return _deployment({"env": env}, None, "SSLPIPE_ENV") if env != "production" else Deployment(env="production")


def require_complete(settings: "Settings") -> Deployment:
    """The deployment, or SettingsError when it is production without its servers (SSLPIPE_ENV=production and no
    `deployment:` section read)."""
    d = settings.deployment
    if d.production and d.storage_url is None:
        return _deployment(None, "production", "deployment (SSLPIPE_ENV=production: in the config file, "
                                               "SSLPIPE_CONFIG or --config)")
    return d


def _deployment(section, env_var: str | None, where: str) -> Deployment:
    try:
        return parse_deployment(section, env_var, where)
    except DeploymentError as e:
        raise SettingsError(str(e)) from None


@dataclass(frozen=True)
class Settings:
    home: Home
    contract: str = "unlabeled_images"
    eval_contract: str = "eval_images"
    deployment: Deployment = Deployment()  # local, or production's servers and storage (pipelines/deployment.py)
    workers: int = 0  # ingestion processes; 0 = all cores
    shards: dict | None = None  # overrides of ssl_ops.shards.ShardConfig
    train: dict | None = None  # the training section over TrainConfig's defaults, read by the ssl_encoder asset
    probe: dict | None = None  # ssl_ops.probes.report.ProbeConfig keys, for probe_report
    registry: dict | None = None  # model_name plus ssl_ops.review.GateConfig keys, for registered_model
    automation: dict | None = None  # the automation section over DEFAULT_AUTOMATION
    config_file: str | None = None  # the YAML config applied, if any

    @property
    def env(self) -> str:
        return self.deployment.env

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        home = Home.resolve(overrides.pop("home", None), overrides.pop("landing", None), overrides.pop("eval_dir", None))
        workers = os.environ.get("SSLPIPE_WORKERS", "0")
        if not workers.isdigit():
            raise SettingsError(f"SSLPIPE_WORKERS={workers!r}: a number of processes is expected (0 = all cores)")
        s = cls(home=home, contract=os.environ.get("SSLPIPE_CONTRACT", "unlabeled_images"),
                eval_contract=os.environ.get("SSLPIPE_EVAL_CONTRACT", "eval_images"), workers=int(workers),
                deployment=_env_only(os.environ.get("SSLPIPE_ENV") or "local"))
        s = replace(s, **{k: v for k, v in overrides.items() if v is not None})
        return s.with_config_file(os.environ.get("SSLPIPE_CONFIG") or None)

    def with_config_file(self, path: str | Path | None) -> "Settings":
        """Apply a YAML config file: keys contract, eval_contract, workers, shards: {seed, max_samples, max_bytes}."""
        if not path:
            return self
        p = Path(path)
        if not p.is_file():
            raise SettingsError(f"config file {p} does not exist")
        try:
            d = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise SettingsError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(d, dict):
            raise SettingsError(f"{p}: the config is a YAML mapping")
        unknown = sorted(set(d) - CONFIG_KEYS)
        if unknown:
            raise SettingsError(f"{p}: unknown key(s) {unknown}; allowed: {sorted(CONFIG_KEYS)}")
        shards = d.get("shards") or {}
        if not isinstance(shards, dict):
            raise SettingsError(f"{p}: shards must be a mapping such as {{max_samples: 2048}}, got {shards!r}")
        bad = sorted(set(shards) - set(ShardConfig.__dataclass_fields__))
        if bad:
            raise SettingsError(f"{p}: shards: unknown key(s) {bad}; allowed: {sorted(ShardConfig.__dataclass_fields__)}")
        for k, v in shards.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if k == "seed" else 1):
                raise SettingsError(f"{p}: shards.{k} must be an integer >= {0 if k == 'seed' else 1}, got {v!r}")
        workers = d.get("workers", self.workers)
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
            raise SettingsError(f"{p}: workers must be an integer >= 0 (0 = all cores), got {workers!r}")
        for key in ("contract", "eval_contract"):
            if key in d and not isinstance(d[key], str):
                raise SettingsError(f"{p}: {key} must be a shipped contract name or a path to a YAML file, got {d[key]!r}")
        train = _train_section(d.get("train"), p)
        probe = _probe_section(d.get("probe"), p)
        registry = _registry_section(d.get("registry"), p)
        automation = _automation_section(d.get("automation"), p)
        env_var = os.environ.get("SSLPIPE_ENV") or None
        deployment = _deployment(d.get("deployment"), env_var, f"{p}: deployment") \
            if "deployment" in d else self.deployment
        base = p.parent
        contract = d.get("contract", self.contract)
        eval_contract = d.get("eval_contract", self.eval_contract)
        return replace(self, contract=_relative(contract, base), eval_contract=_relative(eval_contract, base),
                       workers=workers, shards=shards or self.shards, train=train, probe=probe,
                       registry=registry, automation=automation, deployment=deployment,
                       config_file=str(p.resolve()))

    def with_train_recipe(self, recipe: dict) -> "Settings":
        """A recipe (TrainConfig keys) under the configured train section: keys the section sets win (the demo
        passes its digits recipe this way)."""
        return replace(self, train=train_defaults(self.train, {**BASE_TRAIN, **recipe}))

    @property
    def auto(self) -> dict:
        """DEFAULT_AUTOMATION with the config's automation section over it."""
        return {**DEFAULT_AUTOMATION, **(self.automation or {})}

    def environment(self) -> dict[str, str]:
        """The variables another process needs to see these settings (`dagster dev`, the daemon, a code server):
        returned as a value for its command line or env; this process's environment is left alone."""
        env = {"DAGSTER_HOME": str(self.home.dagster_home), "SSLPIPE_HOME": str(self.home.root)}
        if self.home.landing != self.home.root / "landing":
            env["SSLPIPE_LANDING"] = str(self.home.landing)
        if self.home.eval_dir != self.home.root / "eval":
            env["SSLPIPE_EVAL"] = str(self.home.eval_dir)
        for key, value, default in (("SSLPIPE_CONTRACT", self.contract, "unlabeled_images"),
                                    ("SSLPIPE_EVAL_CONTRACT", self.eval_contract, "eval_images"),
                                    ("SSLPIPE_WORKERS", str(self.workers), "0"),
                                    ("SSLPIPE_ENV", self.env, "local")):
            if value != default:
                env[key] = value
        if self.config_file:
            env["SSLPIPE_CONFIG"] = self.config_file
        return env


def _train_section(train, p: Path) -> dict | None:
    """The `train:` section checked now, so that a typo fails before any data is touched."""
    if train is None:
        return None
    if not isinstance(train, dict):
        raise SettingsError(f"{p}: train must be a mapping such as {{method: byol, steps: 500}}, got {train!r}")
    from ssl_ops.train import ConfigError, TrainConfig

    window = {k: train[k] for k in WINDOW_KEYS if k in train}
    if "batches" in window and not (isinstance(window["batches"], list)
                                    and all(isinstance(b, str) for b in window["batches"])):
        raise SettingsError(f"{p}: train.batches must be a list of batch names, got {window['batches']!r}")
    if "last_batches" in window and (not isinstance(window["last_batches"], int) or window["last_batches"] < 0):
        raise SettingsError(f"{p}: train.last_batches must be an integer >= 0 (0 = all), got {window['last_batches']!r}")
    try:
        TrainConfig.from_dict(train_config_dict(train))
    except ConfigError as e:
        raise SettingsError(f"{p}: {e}") from None
    return dict(train)


def _probe_section(probe, p: Path) -> dict | None:
    from ssl_ops.probes.report import ProbeConfig

    return _dataclass_section("probe", probe, ProbeConfig, p, "{seed: 1, test_fraction: 0.3, draws: 3}")


def _registry_section(registry, p: Path) -> dict | None:
    from ssl_ops.review import GateConfig

    if registry is None:
        return None
    if not isinstance(registry, dict):
        raise SettingsError(f"{p}: registry must be a mapping such as {{model_name: my-encoder, seed_margin: 0.03}}, "
                            f"got {registry!r}")
    name = registry.get("model_name", DEFAULT_MODEL_NAME)
    if not isinstance(name, str) or not name.strip():
        raise SettingsError(f"{p}: registry.model_name must be a non-empty name, got {name!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\- ]{0,255}", name) or name != name.strip():
        raise SettingsError(f"{p}: registry.model_name {name!r} is not a usable MLflow model name: use letters, "
                            f"digits, '_', '-', '.' and spaces (no '/' or ':'), e.g. ssl-encoder")
    approval = registry.get("approval", DEFAULT_APPROVAL)
    if approval not in APPROVAL_MODES:
        raise SettingsError(f"{p}: registry.approval must be one of {list(APPROVAL_MODES)} (human: `champion` moves only "
                            f"when a reviewer runs `sslpipe approve`; auto: the gate's pass moves it), got {approval!r}")
    _dataclass_section("registry", {k: v for k, v in registry.items() if k not in REGISTRY_KEYS}, GateConfig, p,
                       "{primary_metric: linear, seed_margin: 0.03}", extra=REGISTRY_KEYS)
    return dict(registry)


def _automation_section(auto, p: Path) -> dict | None:
    if auto is None:
        return None
    if not isinstance(auto, dict):
        raise SettingsError(f"{p}: automation must be a mapping such as {{landing_sensor: running, min_new_images: "
                            f"1000}}, got {auto!r}")
    unknown = sorted(set(auto) - set(DEFAULT_AUTOMATION))
    if unknown:
        raise SettingsError(f"{p}: automation: unknown key(s) {unknown}; allowed: {sorted(DEFAULT_AUTOMATION)}")
    for k, v in auto.items():
        if k in ("landing_sensor", "retrain_sensor", "retrain_schedule") and v not in STATUSES:
            raise SettingsError(f"{p}: automation.{k} must be one of {list(STATUSES)}, got {v!r}")
        if k in ("min_new_images", "quiet_seconds", "sensor_interval_seconds") and (
                not isinstance(v, int) or isinstance(v, bool) or v < (1 if k == "sensor_interval_seconds" else 0)):
            raise SettingsError(f"{p}: automation.{k} must be a whole number >= "
                                f"{1 if k == 'sensor_interval_seconds' else 0}, got {v!r}")
        if k == "retrain_cron" and v is not None:
            from dagster._utils.schedules import is_valid_cron_string

            if not isinstance(v, str) or not is_valid_cron_string(v):
                raise SettingsError(f"{p}: automation.retrain_cron must be a cron string such as \"0 3 * * *\" "
                                    f"(minute hour day month weekday), got {v!r}")
        if k == "timezone":
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(str(v))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise SettingsError(f"{p}: automation.timezone {v!r} is not a known time zone (e.g. UTC, "
                                    f"Europe/Paris)") from None
    return dict(auto)


def _dataclass_section(name: str, d, dc: type, p: Path, example: str, extra: tuple = ()) -> dict | None:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise SettingsError(f"{p}: {name} must be a mapping such as {example}, got {d!r}")
    fields = dc.__dataclass_fields__
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise SettingsError(f"{p}: {name}: unknown key(s) {unknown}; allowed: {sorted(set(fields) | set(extra))}")
    for k, v in d.items():
        want = fields[k].type if isinstance(fields[k].type, type) else type(fields[k].default)
        ok = isinstance(v, want) and not isinstance(v, bool) or (want is float and isinstance(v, int)
                                                                 and not isinstance(v, bool))
        if not ok:
            raise SettingsError(f"{p}: {name}.{k} must be a {want.__name__}, got {v!r}")
    try:
        dc(**d)
    except ValueError as e:
        raise SettingsError(f"{p}: {name}: {e}") from None
    return dict(d)


def gate_defaults(registry: dict | None) -> dict:
    """The registry section less model_name and approval: the GateConfig keys (launchpad defaults of
    registered_model)."""
    return {k: v for k, v in (registry or {}).items() if k not in REGISTRY_KEYS}


def approval_mode(registry: dict | None) -> str:
    return (registry or {}).get("approval", DEFAULT_APPROVAL)


def train_defaults(train: dict | None, base: dict | None = None) -> dict:
    """The configured train section over `base` (BASE_TRAIN by default) (window keys included): keys the section
    sets win. Its steps, epochs or budget_minutes replace the base's length; its method_options replace the
    base's, and without them the base's apply where the chosen method takes them."""
    from ssl_ops.train.config import LENGTH_KEYS

    train, base = dict(train or {}), dict(BASE_TRAIN if base is None else base)
    if any(k in train for k in (*LENGTH_KEYS, "budget_minutes")):
        for k in (*LENGTH_KEYS, "budget_minutes"):
            base.pop(k, None)
    merged = {**base, **train}
    if "method_options" not in train and "method_options" in base:  # where the chosen method has them (not DINO's)
        from ssl_ops.methods import METHODS, method_options

        allowed = method_options(merged.get("method", "simclr")) if merged.get("method", "simclr") in METHODS else {}
        merged["method_options"] = {k: v for k, v in base["method_options"].items() if k in allowed}
    return merged


def train_config_dict(train: dict | None) -> dict:
    """train_defaults less the window keys: the keys of ssl_ops.train.TrainConfig."""
    return {k: v for k, v in train_defaults(train).items() if k not in WINDOW_KEYS}


def _relative(contract: str, base: Path) -> str:
    """A contract path in a config file is relative to that file; a bare name is a shipped contract."""
    if contract.endswith((".yaml", ".yml")) and not Path(contract).is_absolute():
        return str((base / contract).resolve())
    return contract


def resources_for(settings: Settings) -> dict:
    """The resources of each environment, as values (nothing is put into the process's environment).

    local:      everything under SSLPIPE_HOME: SQLite MLflow store and local artifacts, local landing and shards.
    production: the same home as the working copy of this process; landing from, and manifests, reports and
                shards published to, the storage prefix; an MLflow tracking server (whose backend store and
                artifact store are its own business)."""
    h = settings.home
    d = require_complete(settings)
    model_name = (settings.registry or {}).get("model_name", DEFAULT_MODEL_NAME)
    # training: in this process, or torchrun's processes launched through Dagster Pipes (deployment.training)
    trainer = InProcessTraining() if d.launcher == "in_process" else TorchrunTraining(nproc_per_node=d.nproc_per_node)
    common = {"io_manager": RecordIOManager(root=str(h.root)), "trainer": trainer}
    if not d.production:
        return {**common,
                "home": PipelineHome(root=str(h.root), landing=str(h.landing), eval_dir=str(h.eval_dir),
                                     workers=settings.workers),
                "mlflow": MlflowTracking(tracking_uri=f"sqlite:///{h.mlflow_dir / 'mlflow.db'}",
                                         artifact_root=str(h.mlflow_dir / "artifacts"), model_name=model_name)}
    return {**common,
            "home": PipelineHome(root=str(h.root), landing=str(h.landing), eval_dir=str(h.eval_dir),
                                 workers=settings.workers, remote=d.storage_url, storage_options=d.storage_options),
            "mlflow": MlflowTracking(tracking_uri=d.mlflow_uri, model_name=model_name, ui_url=d.mlflow_ui)}


TRAIN_POOL = "sslpipe_train"  # assets/ssl_encoder.py: its steps take one slot each


def prepare_instance(settings: Settings) -> dg.DagsterInstance:
    """The Dagster instance of these settings: its dagster.yaml in <home>/dagster (SQLite storage beside it, or,
    in production, PostgreSQL: pipelines/instance.py), created on first use; nothing is put into the process's
    environment. The training pool holds one slot per device (deployment.training.gpus, 1 by default): two
    trainings never share a GPU, and as many run at once as there are GPUs."""
    from pipelines.instance import InstanceConfigError
    from pipelines.instance import prepare_instance as make

    d = require_complete(settings)
    try:
        instance = make(settings.home.dagster_home, d.postgres)
    except InstanceConfigError as e:
        raise SettingsError(str(e)) from None
    storage = instance.event_log_storage
    if storage.get_concurrency_info(TRAIN_POOL).limit != d.gpus:
        storage.set_concurrency_slots(TRAIN_POOL, d.gpus)
    return instance
