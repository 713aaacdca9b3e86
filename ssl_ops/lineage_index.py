"""Pure look-ups behind `sslpipe lineage`: where one image is in a home, and how a batch's shards now compare
with what a model recorded at training time. No dagster, no mlflow (assets/model_lineage.py adds those).

    name, ref = parse_model_spec("ssl-encoder@champion")        # ("ssl-encoder", "champion")
    sid = image_sample_id("landing/b1/cat.jpg")                  # sha256 of the file's bytes, or a given sha256
    rows = manifest_rows(home.accepted_path("b1"), sid)          # pyarrow filter: only the matching rows are read
    members = shard_members(home.shard_dir("b1"), index, sid)    # {"shard-000003.tar": ["<sid>.jpg", "<sid>.json"]}
    sharding = compare_sharding("b1", recorded_digest, recorded_shards, index_now)

A model version records, per batch, its shard index digest (tag sslpipe.shard_index_digests) and the training
run records every shard's (name, samples, sha256) as verified before training (result.json
`verified_shards`). A batch whose index digest differs now was re-sharded since: its shards on disk are not
the bytes the model learned from.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from ssl_ops.shards.verify import file_sha256

SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,255}$")  # as pipelines.settings accepts registry.model_name
ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,255}$")  # MLflow alias names; a ref of digits only is a version


class LineageInputError(ValueError):
    """A bad argument (spec, sha256, path, home): the message says what was expected. Exit status 2."""


def parse_model_spec(spec: str) -> tuple[str, str]:
    """'MODEL@VERSION' or 'MODEL@ALIAS' -> (model name, version digits or alias). Raises LineageInputError."""
    example = "expected MODEL@VERSION or MODEL@ALIAS, e.g. ssl-encoder@3 or ssl-encoder@champion"
    if spec.count("@") != 1:
        raise LineageInputError(f"{spec!r}: {example}")
    name, ref = spec.split("@")
    if not name or not MODEL_NAME.match(name) or name != name.strip():
        raise LineageInputError(f"{spec!r}: {name!r} is not a model name; {example}")
    if not (ref.isdigit() and ref.isascii() and int(ref) > 0) and not ALIAS.match(ref):
        raise LineageInputError(f"{spec!r}: {ref!r} is neither a version number (1, 2, ...) nor an alias name; {example}")
    return name, str(int(ref)) if ref.isdigit() else ref


def image_sample_id(arg: str) -> tuple[str, str | None]:
    """An image given as a 64-hex sha256 or a file path -> (sample id, the file hashed or None).

    64 hex digits are a sha256 (write ./NAME for a file named like one); anything else must be an existing
    regular file, whose bytes are hashed (the pipeline's sample id)."""
    if SHA256.match(arg):
        return arg.lower(), None
    p = Path(arg)
    if not p.exists():
        hexish = re.fullmatch(r"[0-9a-fA-F]+", arg or "")
        why = (f"neither a file nor a sha256 ({len(arg)} hex digits; a sha256 has 64)" if hexish else
               "no such file (give an image file or its 64-hex-digit sha256)")
        raise LineageInputError(f"{arg!r}: {why}")
    if not p.is_file():
        raise LineageInputError(f"{arg!r} is not a regular file (give an image file or its 64-hex-digit sha256)")
    try:
        return file_sha256(p), str(p.resolve())
    except OSError as e:
        raise LineageInputError(f"{arg!r} cannot be read ({e.strerror})") from None


def manifest_rows(path: Path, sample_id: str) -> list[dict]:
    """The rows of one manifest (accepted or quarantine Parquet) with this sample id. Read with a pyarrow
    filter, so that only matching rows are materialized; [] when the file does not exist."""
    if not path.is_file():
        return []
    return pq.read_table(path, filters=[("sample_id", "==", sample_id)]).to_pylist()


def shard_members(shard_dir: Path, index: dict, sample_id: str) -> dict[str, list[str]]:
    """{shard name: [member names]} of the index's shards that hold the sample (tar headers only; the scan
    stops at the first shard that holds it, as a sample is written once). A missing or unreadable shard is
    skipped: `sslpipe verify` names it."""
    for s in index.get("shards", []):
        p = shard_dir / s["name"]
        try:
            with tarfile.open(p, "r:") as tar:
                names = [m.name for m in tar if m.isfile() and m.name.partition(".")[0] == sample_id]
        except (OSError, tarfile.TarError):
            continue
        if names:
            return {s["name"]: sorted(names)}
    return {}


@dataclass
class Sharding:
    """A batch's shards now against the model's record of them."""

    batch: str
    recorded_digest: str | None  # the index digest the model version recorded (None: not recorded)
    digest_now: str | None  # index.json's digest now (None: no index on disk)
    shards: list[dict]  # the index's shards now: name, samples, bytes, sha256, sha256_at_training, same_as_training, file
    gone_shards: list[dict]  # shards recorded at training that the index no longer names

    @property
    def unchanged(self) -> bool:
        return self.recorded_digest is not None and self.digest_now == self.recorded_digest

    @property
    def status(self) -> str:
        """'unchanged', 'resharded' (another index digest now), 'no_index' (the shards are gone) or 'unrecorded'."""
        if self.digest_now is None:
            return "no_index"
        if self.recorded_digest is None:
            return "unrecorded"
        return "unchanged" if self.unchanged else "resharded"


def compare_sharding(batch: str, recorded_digest: str | None, recorded_shards: list | None, index: dict | None,
                     shard_dir: Path | None = None) -> Sharding:
    """recorded_shards: [[name, samples, sha256]] as verified at training (None: unknown). index: index.json now
    (None: missing). shard_dir: where to check that each shard file is present with the index's size."""
    then = {r[0]: {"samples": r[1], "sha256": r[2]} for r in (recorded_shards or [])}
    shards = []
    for s in (index or {}).get("shards", []):
        old = then.get(s["name"])
        row = {"name": s["name"], "samples": s["samples"], "bytes": s["bytes"], "sha256": s["sha256"],
               "sha256_at_training": old["sha256"] if old else None,
               "same_as_training": (old["sha256"] == s["sha256"]) if old else None}
        if shard_dir is not None:
            p = shard_dir / s["name"]
            row["file"] = ("present" if p.is_file() and p.stat().st_size == s["bytes"] else
                           "size differs from the index" if p.is_file() else "missing")
        shards.append(row)
    now = {s["name"] for s in shards}
    gone = [{"name": n, **v} for n, v in then.items() if n not in now]
    return Sharding(batch, recorded_digest, (index or {}).get("digest"), shards, gone)


def short(digest: str | None, n: int = 12) -> str:
    return "none" if not digest else (digest[:n] + "..." if len(digest) > n else digest)
