"""The training process's side of Dagster Pipes: `python -m ssl_ops.train` with its results reported to Dagster.

    torchrun --nproc-per-node 2 --standalone -m pipelines.train_pipes --config train.json --index ... --out run/

Started by assets.train_launch.TorchrunTraining (through dagster.PipesSubprocessClient), or in a Kubernetes
job (pipelines.k8s_manifest). The arguments, exit statuses and output are those of `python -m ssl_ops.train`.

Where this bridge lives, and why here: ssl_ops imports no orchestrator (not even dagster_pipes), so the
library's CLI (ssl_ops.train.__main__.main) takes plain callbacks and this module turns them into Pipes
messages. It is in pipelines/ because `pipelines/__init__.py` imports nothing: `-m pipelines.train_pipes`
loads only dagster_pipes (a single file, no dagster) and ssl_ops in every rank, where `-m assets.<...>` would
import all of dagster and the assets in each rank first. Launchers name it by module name (a string in the
command), so assets/ does not import pipelines/.

Only rank 0 (RANK unset or 0) opens Pipes; the other ranks train silently (two writers would each open and
close the one message stream). Rank 0 reports custom messages (the Dagster side reads them as they arrive):
    {"kind": "steps", "rows": [{"step": 3, "loss": ..., "lr": ..., ...}, ...]}  every `report_every` steps
                                                                          (Pipes extras; default 10) and at the end
    {"kind": "result", "result": TrainResult.to_dict()}                  at the end
    {"kind": "error", "error": "...", "status": 1 or 2}                  training stopped (the message says why)
    {"kind": "crash", "error": "ExceptionType: ..."}                     an unexpected exception (then re-raised)
Outside Dagster (no Pipes environment) it is exactly `python -m ssl_ops.train`: metrics.jsonl beside the
checkpoint holds every step either way.
"""

from __future__ import annotations

import os
import sys
import traceback


def main(argv: list[str] | None = None) -> int:
    from ssl_ops.train.__main__ import main as train_main

    if os.environ.get("RANK", "0") != "0":
        return train_main(argv)
    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        return train_main(argv)
    with open_dagster_pipes() as pipes:
        every = max(1, int(pipes.extras.get("report_every", 10)))
        rows: list[dict] = []

        def flush() -> None:
            if rows:
                pipes.report_custom_message({"kind": "steps", "rows": list(rows)})
                rows.clear()

        def on_step(step: int, metrics: dict) -> None:
            rows.append({"step": step, **metrics})
            if len(rows) >= every:
                flush()

        def on_result(res) -> None:
            flush()
            pipes.report_custom_message({"kind": "result", "result": res.to_dict()})

        def on_error(message: str, status: int) -> None:
            flush()
            pipes.report_custom_message({"kind": "error", "error": message, "status": status})

        try:
            return train_main(argv, callback=on_step, on_result=on_result, on_error=on_error)
        except Exception as e:
            flush()
            pipes.report_custom_message({"kind": "crash",
                                         "error": "".join(traceback.format_exception_only(e)).strip()})
            raise


if __name__ == "__main__":
    sys.exit(main())
