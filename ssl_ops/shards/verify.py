"""Verify a batch's shards against its index.json before anything uses them.

    report = verify_batch(Path("shards/b1"), full=True)   # -> BatchCheck
    if not report.ok:
        print(report.problems[0].what, report.rebuild)      # 'shard-000003.tar: sha256 ... differs ...'
    entries = require_intact([Path("shards/b1/index.json")])  # raises ShardDamaged naming the shard

What is checked, cheapest first:
- the index itself: it parses, its `digest` is recomputed from its shard list (a hand-edited index is caught),
  shard names are plain `shard-NNNNNN.tar` names, the per-shard sample counts add up to `samples`;
- each shard: present, its size and its sha256 as the index says (sha256 runs at about 1 GB/s);
- full mode: every tar member read back: names `<sample id>.<ext>` with a 64-hex-digit id, each sample has
  an image and its `.json` (which parses and names the same sample), the image bytes hash to the sample id,
  the image decodes, and the samples per shard are those of the index; the tar holds nothing after its end.

A damaged shard or index is rebuilt by re-running image_shards for its batch: the writer rewrites shards
whose size or sha256 differ from the index, and an index that is not self-consistent, from the landing
files (`sslpipe run --select image_shards --batches <batch>`).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

SHARD_NAME = re.compile(r"^shard-\d{6}\.tar$")
SAMPLE_ID = re.compile(r"^[0-9a-f]{64}$")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tiff", "ppm", "tga", "ico")


class ShardDamaged(RuntimeError):
    """A shard or its index does not match what image_shards wrote. The message names the shard (and sample)
    and says how to rebuild it. One string argument, so that it survives a DataLoader worker's re-raise."""


@dataclass(frozen=True)
class Problem:
    kind: str  # "index", "shard", "sample" or "manifest"
    path: str  # the file that is damaged
    what: str  # what is wrong, in words


@dataclass
class BatchCheck:
    """The verdict on one batch's shards. `shards`: the index's entries, each with the sha256 measured on disk."""

    batch: str
    index_path: Path
    problems: list[Problem] = field(default_factory=list)
    shards: list[dict] = field(default_factory=list)  # [{"name", "samples", "bytes", "sha256", "path"}]
    samples: int = 0
    digest: str = ""
    sample_ids: set[str] | None = None  # full mode: the sample ids the shards hold
    home: Path | None = None  # for the rebuild command
    config: dict | None = None  # the shard settings the index says it was built with
    config_file: Path | str | None = None  # for the rebuild command

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def rebuild(self) -> str:
        return rebuild_command(self.batch, self.home, config_file=self.config_file)

    def describe(self) -> str:
        """The problems, then how to rebuild (and, when the shards were built with other than the default
        shard settings and no config file is known, that the rebuild needs the --config that set them)."""
        text = "; ".join(f"{p.path}: {p.what}" for p in self.problems) + f". Rebuild with: {self.rebuild}"
        if self.config_file is None and self.config:
            from dataclasses import asdict

            from ssl_ops.shards.writer import ShardConfig

            if self.config != asdict(ShardConfig()):
                text += f" --config FILE (FILE: the config whose shards: section set {self.config})"
        return text


def rebuild_command(batch: str | None, home: Path | None = None, select: str = "image_shards",
                    config_file: Path | str | None = None) -> str:
    """The command that rewrites a batch's shards (or more, `select`), quoted so that it runs as printed.
    config_file: the --config the shards were built with (their shard settings: another max_samples would
    write other shards)."""
    parts = ["sslpipe", "run"] + (["--home", str(home)] if home is not None else []) + \
            (["--config", str(config_file)] if config_file else []) + ["--select", select] + \
            (["--batches", batch] if batch is not None else [])
    return " ".join(shlex.quote(p) for p in parts)


def index_digest(batch: str, shards: list[dict]) -> str:
    """The index digest of a shard list: sha256 of {"batch", "shards"} as canonical JSON (the writer's rule)."""
    return hashlib.sha256(json.dumps({"batch": batch, "shards": shards}, sort_keys=True,
                                     separators=(",", ":")).encode()).hexdigest()


def index_problems(d: dict) -> list[str]:
    """What is inconsistent in a parsed index.json (empty when it is as the writer wrote it)."""
    need = {"batch": str, "shards": list, "samples": int, "digest": str}
    missing = [f"{k} ({t.__name__})" for k, t in need.items() if not isinstance(d.get(k), t)]
    if missing:
        return [f"index.json lacks or mistypes {', '.join(missing)}"]
    out = []
    for i, s in enumerate(d["shards"]):
        if not isinstance(s, dict) or not {"name", "samples", "bytes", "sha256"} <= set(s):
            return [f"shard entry {i} of index.json is not {{name, samples, bytes, sha256}}"]
        if not isinstance(s["name"], str) or not SHARD_NAME.match(s["name"]):
            out.append(f"shard entry {i} has an unexpected name {s['name']!r}")
    if index_digest(d["batch"], d["shards"]) != d["digest"]:
        out.append("its digest does not match its shard list (the index was edited or is damaged)")
    excluded = d.get("excluded", [])
    if not isinstance(excluded, list) or not all(
            isinstance(e, dict) and isinstance(e.get("sample_id"), str) and re.fullmatch(r"[0-9a-f]{64}", e["sample_id"])
            for e in excluded):
        out.append("its `excluded` list is not [{sample_id: <sha256>, ...}] (the index was edited or is damaged)")
    counted = sum(s["samples"] for s in d["shards"] if isinstance(s.get("samples"), int))
    if counted != d["samples"]:
        out.append(f"its shards' sample counts add up to {counted}, but it says samples={d['samples']}")
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_batch(shard_dir: Path, batch: str | None = None, full: bool = False, home: Path | None = None,
                 config_file: Path | str | None = None) -> BatchCheck:
    """Check one batch's index.json and shards (see the module docstring); never raises for damage.
    home, config_file: what the rebuild command names."""
    shard_dir = Path(shard_dir)
    index_path = shard_dir / "index.json"
    rep = BatchCheck(batch=batch or shard_dir.name, index_path=index_path, home=home, config_file=config_file)
    try:
        d = json.loads(index_path.read_text())
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        rep.problems.append(Problem("index", str(index_path), "missing"))
        return rep
    except (OSError, ValueError) as e:
        rep.problems.append(Problem("index", str(index_path), f"unreadable ({e})"))
        return rep
    if batch is None and isinstance(d.get("batch"), str):
        rep.batch = d["batch"]
    rep.config = d.get("config") if isinstance(d.get("config"), dict) else None
    for what in index_problems(d):
        rep.problems.append(Problem("index", str(index_path), what))
    if any(p.what.startswith(("index.json lacks", "shard entry")) for p in rep.problems):
        return rep  # no usable shard list: nothing more to check against
    rep.samples, rep.digest = d["samples"], d["digest"]
    if batch is not None and d["batch"] != batch:
        rep.problems.append(Problem("index", str(index_path), f"names batch {d['batch']!r}, not {batch!r}"))
    ids: set[str] = set()
    for s in d["shards"]:
        p = shard_dir / s["name"]
        rep.shards.append({**s, "path": str(p)})
        if not p.is_file():
            rep.problems.append(Problem("shard", str(p), "missing"))
            continue
        size = p.stat().st_size
        if size != s["bytes"]:
            rep.problems.append(Problem("shard", str(p), f"{size} bytes, the index says {s['bytes']} "
                                                         f"(truncated or overwritten)"))
        else:
            sha = file_sha256(p)
            rep.shards[-1]["sha256"] = sha
            if sha != s["sha256"]:
                rep.problems.append(Problem("shard", str(p), f"sha256 {sha[:12]}... differs from the index's "
                                                             f"{s['sha256'][:12]}... (damaged)"))
        if full:  # damaged or not: say which samples are lost
            found, problems = read_shard(p, s["samples"])
            rep.problems += problems
            ids |= found
    if full:
        rep.sample_ids = ids
    return rep


def verify_batch_url(index_url: str) -> BatchCheck:
    """verify_batch for an index at an fsspec URL (s3://bucket/prefix/shards/b7/index.json: a consumer that reads
    the published copy, such as a training pod): the index's consistency, then each shard's size (one listing)
    and sha256 streamed from the store, without a local copy. Never raises for damage; an unreachable store
    is an OSError."""
    import fsspec

    fs, index_path = fsspec.core.url_to_fs(index_url)
    base = index_url.rsplit("/", 1)[0]
    rep = BatchCheck(batch=base.rsplit("/", 1)[-1], index_path=index_url)
    try:
        d = json.loads(fs.cat_file(index_path))
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        rep.problems.append(Problem("index", index_url, "missing"))
        return rep
    except ValueError as e:
        rep.problems.append(Problem("index", index_url, f"unreadable ({e})"))
        return rep
    if isinstance(d.get("batch"), str):
        rep.batch = d["batch"]
    rep.config = d.get("config") if isinstance(d.get("config"), dict) else None
    for what in index_problems(d):
        rep.problems.append(Problem("index", index_url, what))
    if any(p.what.startswith(("index.json lacks", "shard entry")) for p in rep.problems):
        return rep
    rep.samples, rep.digest = d["samples"], d["digest"]
    dir_path = index_path.rsplit("/", 1)[0]
    sizes = {info["name"].rsplit("/", 1)[-1]: int(info.get("size") or 0)
             for info in fs.ls(dir_path, detail=True, refresh=True) if info.get("type") != "directory"}
    for s in d["shards"]:
        url = f"{base}/{s['name']}"
        rep.shards.append({**s, "path": url})
        if s["name"] not in sizes:
            rep.problems.append(Problem("shard", url, "missing"))
        elif sizes[s["name"]] != s["bytes"]:
            rep.problems.append(Problem("shard", url, f"{sizes[s['name']]} bytes, the index says {s['bytes']} "
                                                      f"(truncated or overwritten)"))
        else:
            h = hashlib.sha256()
            with fs.open(f"{dir_path}/{s['name']}", "rb", block_size=1 << 22) as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
            sha = rep.shards[-1]["sha256"] = h.hexdigest()
            if sha != s["sha256"]:
                rep.problems.append(Problem("shard", url, f"sha256 {sha[:12]}... differs from the index's "
                                                          f"{s['sha256'][:12]}... (damaged)"))
    return rep


def read_shard(path: Path, expected: int | None = None) -> tuple[set[str], list[Problem]]:
    """Read every member of one shard back. -> (sample ids, problems)."""
    from PIL import Image

    problems: list[Problem] = []
    samples: dict[str, dict[str, bytes]] = {}
    order: list[str] = []

    def bad(key, what):
        problems.append(Problem("sample", str(path), f"sample {key}: {what}"))

    try:
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                if not m.isfile():
                    problems.append(Problem("shard", str(path), f"member {m.name!r} is not a regular file"))
                    continue
                key, dot, ext = m.name.partition(".")
                if not dot or "/" in m.name or not SAMPLE_ID.match(key) or ext not in IMAGE_EXTS + ("json",):
                    problems.append(Problem("shard", str(path), f"member name {m.name!r} is not <sample id>.<ext>"))
                    continue
                data = tar.extractfile(m).read()  # first: a member cut short is not half a sample
                if key not in samples:
                    samples[key] = {}
                    order.append(key)
                if ext in samples[key]:
                    bad(key, f"holds .{ext} twice")
                samples[key][ext] = data
            end = tar.offset
        with open(path, "rb") as f:  # after the end-of-archive blocks a tar holds only zeros
            f.seek(end)
            if f.read().strip(b"\0"):
                problems.append(Problem("shard", str(path), f"unreadable tar header at byte {end} (after "
                                                            f"{len(order)} samples): the rest is lost"))
    except (tarfile.TarError, OSError, EOFError) as e:
        problems.append(Problem("shard", str(path), f"not a readable tar after {len(order)} samples ({e})"))
    for key in order:
        members = samples[key]
        image = [e for e in IMAGE_EXTS if e in members]
        if "json" not in members or len(image) != 1:
            bad(key, f"holds {sorted(members)}, one image and a .json expected")
            continue
        try:
            meta = json.loads(members["json"])
            if meta.get("sample_id") != key:
                bad(key, f".json names sample {meta.get('sample_id')!r}")
        except (ValueError, AttributeError) as e:
            bad(key, f".json does not parse ({e})")
        data = members[image[0]]
        if hashlib.sha256(data).hexdigest() != key:
            bad(key, f".{image[0]} bytes do not hash to the sample id")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as im:
                    im.load()
        except Exception as e:  # PIL raises many kinds for broken data
            bad(key, f".{image[0]} does not decode ({type(e).__name__}: {e})")
    if expected is not None and len(order) != expected:
        problems.append(Problem("shard", str(path), f"holds {len(order)} samples, the index says {expected}"))
    return set(order), problems


def require_intact(index_paths: list[Path | str], full: bool = False, home: Path | None = None) -> list[BatchCheck]:
    """Verify every index and shard (size and sha256; full: every member too); raise ShardDamaged naming each
    damaged shard and the command that rebuilds its batch. -> the passing BatchChecks, in order. An index at
    an fsspec URL (s3://...) is checked where it is (verify_batch_url: size and sha256, streamed)."""
    checks = [verify_batch_url(str(p)) if "://" in str(p) else verify_batch(Path(p).parent, full=full, home=home)
              for p in index_paths]
    damaged = [c for c in checks if not c.ok]
    if damaged:
        raise ShardDamaged("damaged shard data, not used: " + " | ".join(c.describe() for c in damaged))
    return checks


def shard_sample_ids(path: Path) -> set[str]:
    """The sample ids (member names up to the first dot) a shard holds; reads tar headers only."""
    with tarfile.open(path, "r:") as tar:
        return {m.name.partition(".")[0] for m in tar if m.isfile()}
