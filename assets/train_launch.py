"""Where ssl_encoder's training runs: a resource (key `trainer`) with one method, train(...).

    InProcessTraining()                        in the asset's own process (ssl_ops.train.train); the default
    TorchrunTraining(nproc_per_node=2)         `torchrun ... -m pipelines.train_pipes` launched through Dagster
                                               Pipes (dagster.PipesSubprocessClient): DDP over N processes
                                               (gloo on CPU, NCCL on GPUs), one per GPU

ssl_encoder keeps everything else: the run key, the lock on models/<key>/, result.json and its reuse, the MLflow
run (params, per-step metrics, artifacts). A launcher only trains into models/<key>/ and hands each step's
metrics to on_step(step, metrics) and returns the TrainResult. Running again on the same folder resumes from
its checkpoint.pt, whichever launcher wrote it (the config must be the same; the run key makes it so).

TorchrunTraining:
- The command comes from ssl_ops.train.command.launch_spec, the one function that also builds the command of
  the Kubernetes manifest (pipelines.k8s_manifest): `python -m torch.distributed.run --nnodes 1
  --nproc-per-node N --standalone ... -m pipelines.train_pipes --config models/<key>/train.json --index ...
  --out models/<key>`. With nnodes > 1 and rdzv_endpoint set the command joins a c10d rendezvous (rdzv id: the
  run key); this process starts node 0's torchrun, the other nodes run the same command (logged at launch).
- Rank 0 of the launched job reports over Pipes (pipelines/train_pipes.py says why the bridge lives there):
  batches of per-step metrics, the TrainResult, or the error that stopped it. The messages are read as they
  arrive (a message reader that taps Dagster's handler), so MLflow gets each step and the Dagster log gets
  progress lines while the job runs.
- Errors as in the process: training stopped for a reason (bad config found by the trainer, non-finite loss,
  collapse, damaged data) -> TrainingError naming it, with the tail of the ranks' stderr (torchrun's
  --log-dir under models/<key>/logs): ssl_encoder fails without retry. Killed (a signal: OOM killer, lost
  machine, `kill`) -> TrainingKilled; crashed without a reason -> TrainingCrashed: both retried by the asset's
  retry policy, which resumes from the checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from dagster._core.errors import DagsterPipesExecutionError  # what PipesSubprocessClient raises (not exported)

from ssl_ops.data.loader import shard_entries
from ssl_ops.train import ShardSource, TrainConfig, TrainingError, TrainResult, train
from ssl_ops.train.command import LOG_DIR, LaunchError, LaunchSpec, Torchrun, launch_spec

ROOT = Path(__file__).resolve().parents[1]  # the project: put on the launched process's PYTHONPATH
ENTRY_MODULE = "pipelines.train_pipes"
OnStep = Callable[[int, dict], None]


class TrainingKilled(RuntimeError):
    """The launched training died of a signal; a relaunch resumes from its checkpoint."""


class TrainingCrashed(RuntimeError):
    """The launched training exited without saying why (the message holds its stderr's tail)."""


class TrainLauncher(dg.ConfigurableResource):
    """How ssl_encoder trains (resource key `trainer`)."""

    def train(self, context: dg.AssetExecutionContext, cfg: TrainConfig, window: list[dict], samples: int,
              out: Path, on_step: OnStep, monitor: Path | None = None) -> TrainResult:
        """Train (or resume) into `out` on the shards of `window` (entries with `index`: an index.json);
        on_step(step, metrics) for each logged step of rank 0 (and {"probe_knn20": ...} for each probe of the
        training monitor, a .npz of ssl_ops.train.monitor, when given). Raises TrainingError (or ShardDamaged) when
        training stopped for a reason that a retry cannot change."""
        raise NotImplementedError


class InProcessTraining(TrainLauncher):
    """Train in the asset's process: one process, the GPU when present."""

    def train(self, context, cfg, window, samples, out, on_step, monitor=None) -> TrainResult:
        from ssl_ops.train.monitor import KnnMonitor

        entries = shard_entries([Path(w["index"]) for w in window])
        return train(cfg, ShardSource([u for u, _ in entries], cfg.image_size, cfg.batch_size, cfg.workers, cfg.seed,
                                      expected=dict(entries)), out, num_samples=samples, callback=on_step,
                     monitor=KnnMonitor.load(monitor) if monitor else None)


class TorchrunTraining(TrainLauncher):
    """Train as a torchrun DDP job outside the asset's process, launched and heard through Dagster Pipes."""

    nproc_per_node: int = 2  # processes per node: one per GPU (on CPU: gloo, each with OMP_NUM_THREADS=1)
    nnodes: int = 1
    rdzv_endpoint: str | None = None  # HOST:PORT of node 0, for more than one node
    rdzv_backend: str = "c10d"
    max_restarts: int = 0  # torchrun's own restarts; the asset's retry policy relaunches (and resumes) anyway
    env: dict[str, str] = {}  # extra environment of the job (e.g. NCCL_*, CUDA_VISIBLE_DEVICES)
    python: str | None = None  # interpreter running torch.distributed.run (default: this one)
    entry_module: str = ENTRY_MODULE
    report_every: int = 10  # steps per Pipes message

    def torchrun(self, rdzv_id: str | None = None, console: bool = True) -> Torchrun:
        return Torchrun(nproc_per_node=self.nproc_per_node, nnodes=self.nnodes, rdzv_endpoint=self.rdzv_endpoint,
                        rdzv_backend=self.rdzv_backend, rdzv_id=rdzv_id, max_restarts=self.max_restarts,
                        env=dict(self.env), console=console)

    def launcher(self) -> list[str]:
        return [self.python or sys.executable, "-m", "torch.distributed.run"]

    def launch_spec(self, config: str, index: list[str], out: str, rdzv_id: str | None = None,
                    launcher: list[str] | None = None, monitor: str | None = None) -> LaunchSpec:
        """The launch (argv + env) of this configuration: what train() runs, and what the Kubernetes manifest
        runs with launcher ["torchrun"]."""
        # launched here, the ranks' output goes to their log files only (progress comes back through Pipes); on
        # a cluster (a launcher given) to the pod's log too
        return launch_spec(self.torchrun(rdzv_id, console=launcher is not None), self.entry_module, config, index,
                           out, launcher=self.launcher() if launcher is None else launcher, monitor=monitor)

    def train(self, context, cfg, window, samples, out, on_step, monitor=None) -> TrainResult:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        config = out / "train.json"  # the config as the launched CLI reads it
        config.write_text(json.dumps(cfg.to_dict(), indent=1, sort_keys=True))
        try:
            spec = self.launch_spec(str(config), [str(w["index"]) for w in window], str(out), rdzv_id=out.name,
                                    monitor=str(monitor) if monitor else None)
        except LaunchError as e:
            raise TrainingError(f"the trainer resource: {e}") from None
        env = {**spec.env, "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        if "OMP_NUM_THREADS" not in os.environ and "OMP_NUM_THREADS" not in env:
            # the cores shared among this node's ranks (torchrun's own default is 1 thread, with a banner)
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.nproc_per_node))
        context.log.info(f"ssl_encoder: launching {self.nnodes} node(s) x {self.nproc_per_node} process(es)"
                         f"{' (this is node 0; run the same command on the others)' if self.nnodes > 1 else ''}: "
                         f"{shlex.join(spec.argv)}")
        messages = _Messages(on_step)
        logs = out / LOG_DIR
        before = set(logs.iterdir()) if logs.is_dir() else set()
        try:
            dg.PipesSubprocessClient(message_reader=_StreamingReader(messages.receive)).run(
                context=context, command=spec.argv, env=env, extras={"report_every": self.report_every})
        except DagsterPipesExecutionError as e:
            messages.raise_callback_error()
            code = _exit_code(str(e))
            tail = stderr_tail(logs, before)
            if messages.error is not None:
                raise TrainingError(f"{messages.error.get('error')}{tail}") from None
            if code is not None and code < 0:
                raise TrainingKilled(f"the training job was killed (signal {-code}); the next attempt resumes "
                                     f"from the checkpoint in {out}{tail}") from None
            what = f": {messages.crash['error']}" if messages.crash else ""
            raise TrainingCrashed(f"the training job exited with status {code}{what}{tail}") from None
        messages.raise_callback_error()
        if messages.result is None:
            raise TrainingCrashed(f"the training job ended without reporting a result over Dagster Pipes (is "
                                  f"{self.entry_module} the entry module?){stderr_tail(logs, before)}")
        return TrainResult(**messages.result)


class _Messages:
    """Rank 0's custom Pipes messages as they arrive (on the message reader's thread)."""

    def __init__(self, on_step: OnStep):
        self.on_step = on_step
        self.result: dict | None = None
        self.error: dict | None = None
        self.crash: dict | None = None
        self._callback_error: BaseException | None = None
        self._lock = threading.Lock()

    def receive(self, payload) -> None:
        if not isinstance(payload, dict):
            return
        kind = payload.get("kind")
        with self._lock:
            if kind == "steps" and self._callback_error is None:
                try:
                    for row in payload.get("rows", []):
                        row = dict(row)
                        self.on_step(int(row.pop("step")), row)
                except Exception as e:  # e.g. the tracking server away: raised in the asset once the job ends
                    self._callback_error = e
            elif kind == "result":
                self.result = payload.get("result")
            elif kind == "error":
                self.error = payload
            elif kind == "crash":
                self.crash = payload

    def raise_callback_error(self) -> None:
        if self._callback_error is not None:
            raise self._callback_error


class _Tap:
    """Dagster's message handler, with each custom message also handed to `receive` as it arrives."""

    def __init__(self, handler, receive: Callable[[object], None]):
        self._handler, self._receive = handler, receive

    def handle_message(self, message) -> None:
        self._handler.handle_message(message)
        if message.get("method") == "report_custom_message":
            self._receive((message.get("params") or {}).get("payload"))

    def __getattr__(self, name):
        return getattr(self._handler, name)


class _StreamingReader(dg.PipesTempFileMessageReader):
    """PipesTempFileMessageReader (messages in a temporary file, read by a thread while the process runs) that
    also hands each custom message to a callback at once, instead of only after the process ends
    (PipesClientCompletedInvocation.get_custom_messages)."""

    def __init__(self, receive: Callable[[object], None]):
        super().__init__()
        self._receive = receive

    @contextlib.contextmanager
    def read_messages(self, handler):
        with super().read_messages(_Tap(handler, self._receive)) as params:
            yield params


def _exit_code(message: str) -> int | None:
    m = re.search(r"failed with code (-?\d+)", message)
    return int(m.group(1)) if m else None


def stderr_tail(logs: Path, before: set[Path] = frozenset(), lines: int = 15, ranks: int = 4) -> str:
    """The last lines of each rank's stderr in torchrun's log folders made since `before` (its latest attempt),
    as text to append to a message ("" when there are none)."""
    if not logs.is_dir():
        return ""
    runs = sorted((p for p in logs.iterdir() if p.is_dir() and p not in before), key=lambda p: p.stat().st_mtime)
    if not runs:
        return ""
    attempts = sorted(runs[-1].glob("attempt_*"), key=lambda p: int(p.name.split("_")[-1]))
    if not attempts:
        return ""
    parts = []
    for f in sorted(attempts[-1].glob("*/stderr.log"), key=lambda p: int(p.parent.name))[:ranks]:
        text = f.read_text(errors="replace").splitlines()
        if any(x.strip() for x in text):
            parts.append(f"\n--- local rank {f.parent.name}, last lines of {f} ---\n" + "\n".join(text[-lines:]))
    return "".join(parts)
