"""The Kubernetes manifest of the training job (pipelines.k8s_manifest): the committed example is exactly what its
recorded command renders, and it runs the command the local launcher runs, with a GPU per rank and secrets by
reference only."""

import json
import shlex
from pathlib import Path

import pytest
import yaml

from assets import TorchrunTraining
from pipelines.k8s_manifest import PROG, RDZV_ON_MASTER, SECRET_KEYS, main, render_k8s
from ssl_ops.train import TrainConfig
from ssl_ops.train.command import LaunchError

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "deploy" / "k8s" / "pytorchjob.yaml"

pytestmark = pytest.mark.real_train_defaults  # the manifest resolves the train config over the shipped defaults


def recorded_args() -> list[str]:
    first = COMMITTED.read_text().splitlines()[0]
    prefix = f"# Rendered by: {PROG} "
    assert first.startswith(prefix), first
    return shlex.split(first[len(prefix):])


def render(args: list[str], capsys) -> str:
    assert main(args) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def option(args: list[str], name: str) -> list[str]:
    i = args.index(name) + 1
    values = []
    while i < len(args) and not args[i].startswith("--"):
        values.append(args[i])
        i += 1
    return values


def test_the_committed_manifest_is_what_its_recorded_command_renders(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert render(recorded_args(), capsys) == COMMITTED.read_text(), \
        "deploy/k8s/pytorchjob.yaml is stale: render it again with the command on its first line"


def test_the_job_runs_the_local_launchers_command_with_a_gpu_per_rank_and_secrets_by_reference(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-in-this-shell")  # must not leak into the manifest
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "another-s3cr3t")
    args = recorded_args()
    text = render(args, capsys)
    assert "s3cr3t" not in text
    config_map, job = yaml.safe_load_all(text)
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    nodes, gpus = int(option(args, "--nodes")[0]), int(option(args, "--gpus-per-node")[0])
    index, out = option(args, "--index"), option(args, "--out")[0]
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == nodes - 1 >= 1

    # the command: the local launcher's own launch spec for this shape, with torchrun as the launcher
    local = TorchrunTraining(nproc_per_node=gpus, nnodes=nodes, rdzv_endpoint=RDZV_ON_MASTER)
    config = "/etc/sslpipe/train.json"
    expected = local.launch_spec(config, index, out, rdzv_id=job["metadata"]["name"], launcher=["torchrun"])
    here = local.launch_spec(config, index, out, rdzv_id=job["metadata"]["name"])  # what train() would run
    # the same command but for where the ranks' output goes: the pod's log too (--tee), or the files only here,
    # where progress comes back through Pipes (--redirects)
    assert here.argv[:3] == [local.launcher()[0], "-m", "torch.distributed.run"]
    assert here.argv[3:] == [("--redirects" if a == "--tee" else a) for a in expected.argv[1:]]
    assert "--tee" in expected.argv
    for role in ("Master", "Worker"):
        (c,) = specs[role]["template"]["spec"]["containers"]
        assert c["name"] == "pytorch" and c["image"] == option(args, "--image")[0]
        assert c["command"] == expected.argv
        assert c["command"][c["command"].index("--nproc-per-node") + 1] == str(gpus)
        assert "-m" in c["command"] and c["command"][c["command"].index("-m") + 1] == "pipelines.train_pipes"
        assert c["resources"]["limits"]["nvidia.com/gpu"] == gpus == c["resources"]["requests"]["nvidia.com/gpu"]
        env = {e["name"]: e for e in c["env"]}
        for key in SECRET_KEYS:  # from the Secret, by name; no value in the manifest
            assert "value" not in env[key]
            assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "sslpipe-secrets", "key": key}
        assert all("value" in e for k, e in env.items() if k not in SECRET_KEYS)
        assert env["PYTHONUNBUFFERED"]["value"] == "1"
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert out.startswith(mounts["models"] + "/") and config.startswith(mounts["train-config"] + "/")
    # the config the job is given: the file's train section over the defaults, valid, in the ConfigMap it mounts
    cfg = TrainConfig.from_dict(json.loads(config_map["data"]["train.json"]))
    assert cfg.batch_size % (nodes * gpus) == 0 and cfg.method == "simclr" and cfg.steps == 20000
    volumes = {v["name"]: v for v in specs["Master"]["template"]["spec"]["volumes"]}
    assert volumes["train-config"]["configMap"]["name"] == config_map["metadata"]["name"]


def test_one_node_runs_standalone_without_workers():
    (_, job) = render_k8s(image="img:1", train=TrainConfig(), index=["s3://b/shards/x/index.json"],
                          out="/models/k1", gpus_per_node=4)
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master"}
    cmd = specs["Master"]["template"]["spec"]["containers"][0]["command"]
    assert "--standalone" in cmd and "--rdzv-endpoint" not in cmd and cmd[cmd.index("--nproc-per-node") + 1] == "4"


@pytest.mark.parametrize("kwargs,message", [
    ({"env": {"MLFLOW_TRACKING_PASSWORD": "x"}}, "look like secrets"),
    ({"env": {"AWS_SECRET_ACCESS_KEY": "x"}}, "look like secrets"),
    ({"out": "/elsewhere/k1"}, "not under --models-mount"),
    ({"name": "Not_A_Name"}, "not a Kubernetes name"),
    ({"secret_keys": ["BAD-NAME"]}, "not environment variable names"),
])
def test_refuses_secret_values_inline_and_unusable_settings(kwargs, message):
    base = dict(image="img:1", train=TrainConfig(), index=["s3://b/i.json"], out="/models/k1")
    with pytest.raises(LaunchError, match=message):
        render_k8s(**{**base, **kwargs})


def test_a_bad_train_config_or_argument_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  method: swav\n")
    assert main(["--image", "i", "--train-config", str(bad), "--index", "s3://b/i.json", "--out", "/models/k"]) == 2
    assert "train.method 'swav' is unknown" in capsys.readouterr().err
    ok = tmp_path / "ok.yaml"
    ok.write_text("train: {method: byol}\n")  # the image size is fitted to the images: a job here cannot
    assert main(["--image", "i", "--train-config", str(ok), "--index", "s3://b/i.json", "--out", "/models/k"]) == 2
    assert "set train.image_size (px)" in capsys.readouterr().err
    ok.write_text("train: {method: byol, image_size: 32}\n")
    assert main(["--image", "i", "--train-config", str(ok), "--index", "s3://b/i.json", "--out", "/models/k",
                 "--env", "DB_PASSWORD=hunter2"]) == 2
    assert "look like secrets" in capsys.readouterr().err
