"""`sslpipe land`: put a folder of images where the pipeline takes batches from, complete (its `_READY` last).

    sslpipe land ./photos-2026-11-30 --batch 2026-11-30 [--home H] [--config prod.yaml]
    sslpipe land ./labeled --eval [--home H] [--config prod.yaml]

local:      copied into <landing>/<batch>/ (under a hidden name first, renamed when whole), then `_READY`.
production: uploaded to <storage.url>/landing/<batch>/ (ssl_ops.storage: concurrent PUTs), then the `_READY`
            object, so the landing sensor and `sslpipe run` never take a half-uploaded batch.
The eval set goes to <eval>/ (local) or <storage.url>/eval/ (production). Any tool that writes the same layout
(cp, rsync, aws s3 cp, rclone) does the same; this one checks the batch name first and marks it last.
Exit status: 0 landed, 2 bad arguments (a name a Dagster partition cannot hold, a batch that exists, no folder).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ssl_ops.escape import terminal
from ssl_ops.ingest.ready import READY_MARKER


class LandError(ValueError):
    """Bad arguments; the message says what to fix."""


def land_batch(settings, src: Path, batch: str, echo=print, exist_ok: bool = False) -> str:
    """Land src as batch `batch`; -> where it landed. exist_ok: a batch already there is left as it is (the
    demo, run again)."""
    from pipelines.settings import resources_for
    from pipelines.sensors import batch_problem

    why = batch_problem(Path(batch))
    if why:
        raise LandError(f"batch name {batch!r}: {why}")
    _require_folder(src)
    home = resources_for(settings)["home"]
    store = home.store()
    if store is not None:
        if store.files(f"landing/{batch}"):
            if exist_ok:
                echo(f"batch {terminal(batch)} is already in {terminal(store.uri(f'landing/{batch}'))}")
                return store.uri(f"landing/{batch}")
            raise LandError(f"{store.uri(f'landing/{batch}')} already holds objects: land new images as a new batch "
                            f"(a batch is ingested once; its partition keeps its data)")
        # a _READY the folder already holds goes last, after every file; else one is written after them
        n = store.publish(src, f"landing/{batch}", last=READY_MARKER)
        if (src / READY_MARKER).is_file():
            n -= 1
        else:
            store.write_bytes(f"landing/{batch}/{READY_MARKER}", b"")
        where = store.uri(f"landing/{batch}")
    else:
        dst = settings.home.landing / batch
        if dst.exists():
            if exist_ok:
                return str(dst)
            raise LandError(f"{dst} already exists: land new images as a new batch")
        tmp = dst.with_name(f".{batch}.landing")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(".*"))
        n = sum(1 for p in tmp.rglob("*") if p.is_file())
        tmp.rename(dst)
        (dst / READY_MARKER).touch()
        where = str(dst)
    echo(f"landed {n} file(s) from {terminal(src)} as batch {terminal(batch)} in {terminal(where)} "
         f"(marked {READY_MARKER})")
    return where


def land_eval(settings, src: Path, echo=print) -> str:
    from pipelines.settings import resources_for

    _require_folder(src)
    home = resources_for(settings)["home"]
    store = home.store()
    if store is not None:
        n = store.publish(src, "eval")  # replaces the prefix's eval set: objects it no longer has are deleted
        where = store.uri("eval")
    else:
        dst = settings.home.eval_dir
        if dst.exists() and any(dst.iterdir()):
            raise LandError(f"{dst} already holds an eval set: remove it first (the probes compare models on one "
                            f"eval set; changing it changes every figure)")
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".*"))
        n = sum(1 for p in dst.rglob("*") if p.is_file())
        where = str(dst)
    echo(f"landed {n} file(s) from {terminal(src)} as the eval set in {terminal(where)}")
    return where


def _require_folder(src: Path) -> None:
    if not src.is_dir():
        raise LandError(f"{src} is not a folder")
    if not any(p.is_file() for p in src.rglob("*")):
        raise LandError(f"{src} holds no files")


def add_commands(sub) -> None:
    p = sub.add_parser("land", help="put a folder of images where batches land (local folder or the storage "
                                    "prefix), marked complete last")
    p.add_argument("folder", type=Path)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--batch", help="the batch's name (a Dagster partition key: no '/', ',', '[', ']')")
    which.add_argument("--eval", action="store_true", help="the labeled eval set instead of a batch")
    p.add_argument("--home", help="state folder (default $SSLPIPE_HOME or ./.sslpipe)")
    p.add_argument("--config", help="the YAML config (its deployment: where batches land)")
    p.set_defaults(handler=_handle)


def _handle(a: argparse.Namespace) -> int:
    from pipelines.settings import Settings, SettingsError
    from ssl_ops.storage import StorageError

    try:
        s = Settings.from_env(home=a.home).with_config_file(a.config)
        if a.eval:
            land_eval(s, a.folder)
        else:
            land_batch(s, a.folder, a.batch)
    except (LandError, SettingsError) as e:
        print(f"sslpipe land: {terminal(str(e))}", file=sys.stderr)
        return 2
    except StorageError as e:
        print(f"sslpipe land: {terminal(str(e))}", file=sys.stderr)
        return 1
    return 0
