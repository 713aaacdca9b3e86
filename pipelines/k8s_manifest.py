"""The training job as Kubernetes manifests: a ConfigMap (the train config) and a Kubeflow PyTorchJob.

    python -m pipelines.k8s_manifest --image REGISTRY/sslpipe:TAG --train-config train.yaml \\
        --index s3://bucket/shards/b1/index.json s3://bucket/shards/b2/index.json --out /models/RUN_KEY \\
        [--nodes 2] [--gpus-per-node 8] [--secret sslpipe-secrets] > deploy/k8s/pytorchjob.yaml

The container runs the command that TorchrunTraining runs locally (assets.train_launch, built by the one
function ssl_ops.train.command.launch_spec), with `torchrun` as the launcher: `-m pipelines.train_pipes`, which
reports over Dagster Pipes when started by a Pipes client and is `python -m ssl_ops.train` otherwise.

- One replica per node (Master, plus Worker replicas for nodes > 1), each with `nvidia.com/gpu` = the
  processes per node (one rank per GPU). Several nodes meet at a c10d rendezvous on the Master
  ($(MASTER_ADDR):$(MASTER_PORT), set by the training operator); one node runs `--standalone`.
- Secrets come from a Kubernetes Secret by reference (env valueFrom.secretKeyRef, one entry per key): the
  manifest holds their names only, never a value. Plain settings (AWS_ENDPOINT_URL, AWS_REGION, ...) go in
  with --env NAME=VALUE; a name that looks secret (…KEY, …SECRET, …TOKEN, …PASSWORD) is refused there.
  The job needs the object store's keys (shards are read from s3://); it does not talk to MLflow (metrics
  travel over Pipes, or stay in metrics.jsonl), so the MLflow credentials are not given to it by default.
- --out must be on a volume every replica mounts (a ReadWriteMany claim, --models-claim, at --models-mount):
  the checkpoint is there, and a restarted pod (restartPolicy OnFailure) resumes from it.
- The train config is resolved as the pipeline resolves it (the shipped defaults with the file's `train:`
  section over them) and validated, then shipped in the ConfigMap and mounted at --config-mount.

The first line of the output records the command that rendered it; tests/pipelines/test_k8s_manifest.py
re-renders deploy/k8s/pytorchjob.yaml from that line and requires the same bytes.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from assets.train_launch import TorchrunTraining
from ssl_ops.train import ConfigError, TrainConfig
from ssl_ops.train.command import LaunchError

PROG = "python -m pipelines.k8s_manifest"
SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
SECRET_LIKE = re.compile(r".*(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIALS?)(_ID)?$", re.IGNORECASE)
RDZV_ON_MASTER = "$(MASTER_ADDR):$(MASTER_PORT)"  # env of every replica, set by the training operator
MASTER_PORT = 23456  # the training operator's default port of the Master's service
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def render_k8s(*, image: str, train: TrainConfig, index: Sequence[str], out: str, name: str | None = None,
               namespace: str | None = None, nodes: int = 1, gpus_per_node: int = 1, secret: str = "sslpipe-secrets",
               secret_keys: Sequence[str] = SECRET_KEYS, env: dict[str, str] | None = None,
               models_claim: str = "sslpipe-models", models_mount: str = "/models",
               config_mount: str = "/etc/sslpipe", cpu: str | None = None, memory: str | None = None,
               shm: str = "8Gi") -> list[dict]:
    """-> [ConfigMap, PyTorchJob] as plain dicts (yaml.safe_dump_all them)."""
    out = out.rstrip("/")
    name = name or f"sslpipe-train-{Path(out).name}".lower()
    if not _NAME.fullmatch(name):
        raise LaunchError(f"job name {name!r} is not a Kubernetes name (lowercase letters, digits and '-', at "
                          f"most 63); give --name")
    if not (out + "/").startswith(models_mount.rstrip("/") + "/"):
        raise LaunchError(f"--out {out} is not under --models-mount {models_mount}: every replica must see the "
                          f"checkpoint folder on the shared volume")
    if nodes < 1 or gpus_per_node < 1:
        raise LaunchError(f"nodes and gpus per node must be >= 1, got {nodes} and {gpus_per_node}")
    env = dict(env or {})
    secretish = sorted(k for k in env if SECRET_LIKE.match(k))
    if secretish:
        raise LaunchError(f"{secretish} look like secrets: give them with --secret-key (from the Secret "
                          f"{secret!r}), not as values in the manifest")
    bad = [k for k in [*env, *secret_keys] if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)]
    if bad:
        raise LaunchError(f"not environment variable names: {bad}")
    both = sorted(set(env) & set(secret_keys))
    if both:
        raise LaunchError(f"{both} given both as values and as secret keys")
    trainer = TorchrunTraining(nproc_per_node=gpus_per_node, nnodes=nodes,
                               rdzv_endpoint=RDZV_ON_MASTER if nodes > 1 else None)
    config = f"{config_mount.rstrip('/')}/train.json"
    spec = trainer.launch_spec(config, list(index), out, rdzv_id=name, launcher=["torchrun"])
    labels = {"app.kubernetes.io/name": "sslpipe", "app.kubernetes.io/component": "training",
              "sslpipe/run-key": _label(Path(out).name)}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": _meta(f"{name}-config", namespace, labels),
                  "data": {"train.json": json.dumps(train.to_dict(), indent=1, sort_keys=True) + "\n"}}
    resources = {"nvidia.com/gpu": gpus_per_node, **({"cpu": cpu} if cpu else {}),
                 **({"memory": memory} if memory else {})}
    container = {
        "name": "pytorch",  # the training operator finds the container by this name
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": spec.argv,
        "env": [{"name": k, "value": v} for k, v in sorted({**spec.env, **env}.items())]
               + [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k}}} for k in secret_keys],
        "ports": [{"name": "pytorchjob-port", "containerPort": MASTER_PORT}],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "volumeMounts": [{"name": "models", "mountPath": models_mount},
                         {"name": "train-config", "mountPath": config_mount, "readOnly": True},
                         {"name": "dshm", "mountPath": "/dev/shm"}],  # DataLoader workers share batches here
    }
    pod = {"metadata": {"labels": labels},
           "spec": {"containers": [container],
                    "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": models_claim}},
                                {"name": "train-config", "configMap": {"name": f"{name}-config"}},
                                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}}]}}
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": pod}}
    if nodes > 1:
        replicas["Worker"] = {"replicas": nodes - 1, "restartPolicy": "OnFailure", "template": copy.deepcopy(pod)}
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": _meta(name, namespace, labels),
           "spec": {"runPolicy": {"backoffLimit": 3, "cleanPodPolicy": "None"}, "pytorchReplicaSpecs": replicas}}
    return [config_map, job]


def _meta(name: str, namespace: str | None, labels: dict) -> dict:
    return {"name": name, **({"namespace": namespace} if namespace else {}), "labels": dict(labels)}


def _label(value: str) -> str:
    v = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63].strip("-_.")
    return v or "none"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the ConfigMap's train.json) as literal blocks, readable in the manifest."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s,
                                                             style="|" if "\n" in s else None))


def to_yaml(docs: list[dict], argv: Sequence[str]) -> str:
    head = (f"# Rendered by: {PROG} {shlex.join(argv)}\n"
            f"# Do not edit: change the arguments and render again (tests/pipelines/test_k8s_manifest.py checks it).\n")
    return head + yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def load_train_config(path: Path) -> TrainConfig:
    """A YAML file with a `train:` section (or a bare mapping), over the pipeline's defaults, validated."""
    from pipelines.settings import train_config_dict

    raw = yaml.safe_load(path.read_text()) or {}
    section = raw.get("train", raw) if isinstance(raw, dict) else raw
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: the train config is a mapping such as {{method: simclr, steps: 500}}")
    cfg = TrainConfig.from_dict(train_config_dict(section))
    if cfg.image_size is None:
        raise ConfigError(f"{path}: set train.image_size (px): the pipeline fits it to the images' sizes when it "
                          f"trains, but a job rendered here does not see the images")
    return cfg


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", required=True, help="the project's container image")
    ap.add_argument("--train-config", type=Path, required=True, help="YAML with a train: section")
    ap.add_argument("--index", nargs="+", required=True, help="index.json URLs (s3://...) or paths in the image")
    ap.add_argument("--out", required=True, help="the run's folder on the shared volume, e.g. /models/RUN_KEY")
    ap.add_argument("--name", help="the job's name (default sslpipe-train-<last part of --out>)")
    ap.add_argument("--namespace")
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--gpus-per-node", type=int, default=1, help="GPUs per replica = training processes per node")
    ap.add_argument("--secret", default="sslpipe-secrets", help="the Secret the keys come from")
    ap.add_argument("--secret-key", action="append", dest="secret_keys",
                    help=f"an env variable taken from the Secret (repeat; default {' '.join(SECRET_KEYS)})")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a plain (not secret) setting")
    ap.add_argument("--models-claim", default="sslpipe-models")
    ap.add_argument("--models-mount", default="/models")
    ap.add_argument("--config-mount", default="/etc/sslpipe")
    ap.add_argument("--cpu")
    ap.add_argument("--memory")
    a = ap.parse_args(argv)
    try:
        env = dict(_pair(e) for e in a.env)
        docs = render_k8s(image=a.image, train=load_train_config(a.train_config), index=a.index, out=a.out,
                          name=a.name, namespace=a.namespace, nodes=a.nodes, gpus_per_node=a.gpus_per_node,
                          secret=a.secret, secret_keys=tuple(a.secret_keys or SECRET_KEYS), env=env,
                          models_claim=a.models_claim, models_mount=a.models_mount, config_mount=a.config_mount,
                          cpu=a.cpu, memory=a.memory)
    except (OSError, ValueError, yaml.YAMLError) as e:  # LaunchError and ConfigError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(to_yaml(docs, argv))
    return 0


def _pair(text: str) -> tuple[str, str]:
    k, sep, v = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
        raise LaunchError(f"--env {text!r}: NAME=VALUE expected")
    return k, v


if __name__ == "__main__":
    sys.exit(main())
