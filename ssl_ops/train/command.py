"""The command that trains outside the caller's process: `torchrun ... -m MODULE --config ... --index ... --out ...`.

    spec = launch_spec(Torchrun(nproc_per_node=2), "ssl_ops.train", config="run/train.json",
                       index=["shards/b1/index.json"], out="run/")
    subprocess.run(spec.argv, env={**os.environ, **spec.env})

One function (launch_spec) builds the argv and the environment for every place a training is launched from:
a local subprocess (assets.train_launch.TorchrunTraining, through Dagster Pipes) and a Kubernetes manifest
(pipelines.k8s_manifest, a Kubeflow PyTorchJob), so the two cannot drift apart. Pure: no process is started
and nothing is read here.

- One node (nnodes 1, no rendezvous endpoint): `--standalone` (torchrun picks a free port, so trainings on
  one machine do not collide on the default master port).
- Several nodes: `--nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT --rdzv-id ID`; the same command
  runs on every node (on Kubernetes, in every replica of the job).
- `--log-dir OUT/logs --tee 3`: each rank's stdout and stderr go to the console and to
  OUT/logs/<id>_<random>/attempt_<n>/<local rank>/{stdout,stderr}.log beside the checkpoint, where a launcher
  reads the tail of a failed rank's stderr (torchrun itself only reports an exit code). With console=False
  (`--redirects 3`) to the files only: launched from Dagster, progress reaches the console through Pipes.
- `--max-restarts` (default 0): torchrun's own restarts of failed workers. Restarts are better left to the
  orchestrator, which relaunches on the same --out and so resumes from the checkpoint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

TRAIN_MODULE = "ssl_ops.train"  # the plain CLI (no orchestrator)
TORCHRUN = ("torchrun",)  # the console script; a local launcher may use (python, "-m", "torch.distributed.run")
LOG_DIR = "logs"  # under --out
_NNODES = re.compile(r"[1-9][0-9]*(:[1-9][0-9]*)?")


class LaunchError(ValueError):
    """A launch that cannot be built; the message names the setting."""


@dataclass(frozen=True)
class Torchrun:
    """torchrun's settings: processes per node (one per GPU), nodes, rendezvous."""

    nproc_per_node: int = 1
    nnodes: int | str = 1  # N, or "MIN:MAX" for an elastic job
    rdzv_endpoint: str | None = None  # HOST:PORT of the rendezvous (node 0); needed with more than one node
    rdzv_backend: str = "c10d"
    rdzv_id: str | None = None  # the job's id, the same on every node (e.g. the run key)
    max_restarts: int = 0
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment of every rank
    console: bool = True  # ranks' output to the console too (--tee; a pod's log), or to the log files only

    def validate(self) -> None:
        if not isinstance(self.nproc_per_node, int) or self.nproc_per_node < 1:
            raise LaunchError(f"nproc_per_node must be an integer >= 1, got {self.nproc_per_node!r}")
        if not _NNODES.fullmatch(str(self.nnodes)):
            raise LaunchError(f"nnodes must be N or MIN:MAX (whole numbers >= 1), got {self.nnodes!r}")
        if self.multi_node and not self.rdzv_endpoint:
            raise LaunchError(f"nnodes {self.nnodes}: several nodes meet at a rendezvous; set rdzv_endpoint "
                              f"(HOST:PORT of node 0)")
        if self.max_restarts < 0:
            raise LaunchError(f"max_restarts must be >= 0, got {self.max_restarts}")
        bad = [k for k in self.env if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)]
        if bad:
            raise LaunchError(f"env: not variable names: {bad}")

    @property
    def multi_node(self) -> bool:
        return str(self.nnodes) != "1"


@dataclass(frozen=True)
class LaunchSpec:
    argv: list[str]
    env: dict[str, str]  # to add to the launching environment (values only: no secrets here)


def train_args(config: str, index: Sequence[str], out: str, print_every: int = 10,
               monitor: str | None = None) -> list[str]:
    """The arguments of `python -m ssl_ops.train` (and of any module with its CLI). None may be a prefix of a
    torchrun option (torchrun's argparse reads abbreviations even after `-m module`: `--monitor` was ambiguous)."""
    if not index:
        raise LaunchError("no shard index to train on")
    return ["--config", str(config), "--index", *map(str, index), "--out", str(out),
            "--print-every", str(print_every), *(["--probe-rows", str(monitor)] if monitor else [])]


def launch_spec(run: Torchrun, module: str, config: str, index: Sequence[str], out: str,
                launcher: Sequence[str] = TORCHRUN, print_every: int = 10, monitor: str | None = None) -> LaunchSpec:
    """argv and environment of a torchrun launch of `module` (ssl_ops.train, or an entry module with its CLI)."""
    run.validate()
    if not re.fullmatch(r"[A-Za-z_][\w.]*", module):
        raise LaunchError(f"module {module!r} is not a Python module name")
    out = str(out).rstrip("/") or "/"
    argv = [*launcher, "--nnodes", str(run.nnodes), "--nproc-per-node", str(run.nproc_per_node)]
    if run.multi_node or run.rdzv_endpoint:
        argv += ["--rdzv-backend", run.rdzv_backend, "--rdzv-endpoint", run.rdzv_endpoint]
        if run.rdzv_id:
            argv += ["--rdzv-id", run.rdzv_id]
    else:
        argv += ["--standalone"]
    argv += ["--max-restarts", str(run.max_restarts), "--log-dir", f"{out}/{LOG_DIR}",
             "--tee" if run.console else "--redirects", "3",
             "-m", module, *train_args(config, index, out, print_every, monitor)]
    return LaunchSpec(argv=argv, env={"PYTHONUNBUFFERED": "1", **dict(run.env)})
