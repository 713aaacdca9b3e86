"""Object storage for a home (production): landing batches come from, and manifests, reports and shards are
published to, a prefix such as s3://bucket/sslpipe, through fsspec (s3fs for s3://; any fsspec URL works:
gs://, az://, file://, memory:// in tests).

    store = ObjectStore("s3://sslpipe/prod", {"endpoint_url": "http://127.0.0.1:9000"})
    store.batches("landing")                      # [(name, [(relative file, size, mtime)])] of each batch prefix
    store.pull("landing/b7", Path("cache/b7"))    # download what is missing or changed (by size); -> files copied
    store.publish(Path("shards/b7"), "shards/b7", last="index.json")

The home's local folder stays the working copy of the process that runs the assets (a node's disk); the prefix
is the record that every other consumer reads (a training pod, a reviewer, a second code location).

Atomic and deterministic on object storage: one object is written whole or not at all (a PUT replaces it
atomically), and a published folder's marker file (a shard index) is uploaded last, after every file it lists,
so a reader that trusts only what the index lists never sees a half-published batch as complete. Objects the
new version no longer has are deleted after the marker is in place. Shards are deterministic, so rewriting the
same data rewrites the same bytes under the same names; readers check sizes and digests against the index.

Credentials never pass through here: s3fs (botocore) reads them from the environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, an instance role); storage options carry only non-secret settings
such as endpoint_url.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path


class StorageError(OSError):
    """Object storage could not be reached or used; the message names the URL and what to check."""


def _mtime(info: dict) -> float:
    """An object's last change as a UNIX time (s3: LastModified, local: mtime), 0 if unknown."""
    for k in ("LastModified", "last_modified", "mtime", "created"):
        v = info.get(k)
        if v is None:
            continue
        if hasattr(v, "timestamp"):
            return float(v.timestamp())
        try:
            return float(v)
        except (TypeError, ValueError):
            continue
    return 0.0


@dataclass
class ObjectStore:
    url: str  # the prefix, e.g. s3://bucket/sslpipe (no trailing slash needed)
    options: dict = field(default_factory=dict)  # fsspec storage options (non-secret: endpoint_url, region, ...)
    BATCH = 256  # files per request group in pull and publish (s3fs sends a group's requests concurrently)

    def __post_init__(self):
        import fsspec

        opts = dict(self.options)
        if self.url.startswith("s3://") and "endpoint_url" in opts:  # s3fs takes the endpoint in client_kwargs
            opts.setdefault("client_kwargs", {})["endpoint_url"] = opts.pop("endpoint_url")
        try:
            self.fs, root = fsspec.core.url_to_fs(self.url, **opts)
        except (ImportError, ValueError) as e:
            raise StorageError(f"cannot use object storage at {self.url}: {e}") from None
        self.root = root.rstrip("/")
        self.scheme = self.url.split("://", 1)[0] if "://" in self.url else "file"

    def __getstate__(self):  # picklable (ingestion workers, Dagster resources): the filesystem is made again
        return {"url": self.url, "options": self.options}

    def __setstate__(self, state):
        self.url, self.options = state["url"], state["options"]
        self.__post_init__()

    # -- names --
    def key(self, rel: str) -> str:
        """The filesystem path of a relative name (bucket/prefix/rel for s3)."""
        rel = rel.strip("/")
        return f"{self.root}/{rel}" if rel else self.root

    def uri(self, rel: str) -> str:
        """The full URL of a relative name, e.g. s3://bucket/prefix/shards/b7/index.json."""
        k = self.key(rel)
        return k if self.scheme == "file" else f"{self.scheme}://{k}"

    def _fail(self, what: str, rel: str, e: Exception) -> StorageError:
        return StorageError(f"object storage: {what} {self.uri(rel)} failed: {type(e).__name__}: {e}. Check that the "
                            f"server is reachable (endpoint {self.options.get('endpoint_url', 'default')}), the bucket "
                            f"exists and the credentials in the environment (AWS_ACCESS_KEY_ID, ...) allow it")

    # -- reading --
    def files(self, rel: str) -> list[tuple[str, int, float]]:
        """(name relative to rel, size, mtime) of every object under rel, sorted; [] if there is none."""
        base = self.key(rel)
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return []
        except Exception as e:  # noqa: BLE001 - network, auth: one clear error
            raise self._fail("listing", rel, e) from e
        out = []
        for path, info in found.items():
            if info.get("type") == "directory":
                continue
            name = posixpath.relpath(path, base)
            if name != "." and not name.startswith(".."):
                out.append((name, int(info.get("size") or 0), _mtime(info)))
        return sorted(out)

    def batches(self, rel: str) -> list[tuple[str, list[tuple[str, int, float]]]]:
        """Each sub-prefix of rel (a batch) with its files; one listing for all of them."""
        by: dict[str, list] = {}
        for name, size, mtime in self.files(rel):
            head, sep, rest = name.partition("/")
            if sep:
                by.setdefault(head, []).append((rest, size, mtime))
        return sorted(by.items())

    def prefixes(self, rel: str) -> list[str]:
        """The names directly under rel that hold objects (one delimited listing, not every object)."""
        base = self.key(rel)
        try:
            found = self.fs.ls(base, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        except Exception as e:  # noqa: BLE001
            raise self._fail("listing", rel, e) from e
        return sorted(posixpath.basename(i["name"].rstrip("/")) for i in found if i.get("type") == "directory")

    def exists(self, rel: str) -> bool:
        try:
            return self.fs.exists(self.key(rel))
        except Exception as e:  # noqa: BLE001
            raise self._fail("checking", rel, e) from e

    def read_bytes(self, rel: str) -> bytes:
        try:
            return self.fs.cat_file(self.key(rel))
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001
            raise self._fail("reading", rel, e) from e

    def pull(self, rel: str, local: Path, progress=None, prune: bool = False) -> int:
        """Make the local folder hold what is under rel: download files missing there or changed (another size or
        last-modified time; a downloaded file takes its object's time), each to a temporary name then renamed (a
        reader never sees half a file); with prune, delete local files no longer there (only for folders that are
        a copy and nothing else: never a user's own folder). -> files downloaded."""
        remote = self.files(rel)
        local.mkdir(parents=True, exist_ok=True)
        want = {name for name, _, _ in remote}
        todo = []
        for name, size, mtime in remote:
            dst = local / name
            if dst.is_file() and dst.stat().st_size == size and (not mtime or dst.stat().st_mtime == mtime):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            todo.append((name, mtime, dst, dst.with_name(f".{dst.name}.{os.getpid()}.part")))
        for i in range(0, len(todo), self.BATCH):  # many requests at once (s3fs: concurrently), then renamed
            chunk = todo[i:i + self.BATCH]
            try:
                self.fs.get([self.key(f"{rel}/{n}") for n, _, _, _ in chunk], [str(t) for _, _, _, t in chunk])
                for _, mtime, dst, tmp in chunk:
                    if mtime:
                        os.utime(tmp, (mtime, mtime))
                    os.replace(tmp, dst)
            except Exception as e:  # noqa: BLE001
                for _, _, _, tmp in chunk:
                    tmp.unlink(missing_ok=True)
                raise self._fail("downloading", f"{rel}/{chunk[0][0]} (and {len(chunk) - 1} more)", e) from e
            if progress:
                progress(min(i + self.BATCH, len(todo)), len(todo))
        copied = len(todo)
        for p in sorted(local.rglob("*"), reverse=True) if prune else []:
            if p.is_file() and p.relative_to(local).as_posix() not in want and not p.name.startswith("."):
                p.unlink()
        return copied

    # -- writing --
    def put_file(self, src: Path, rel: str) -> None:
        try:
            self.fs.put_file(str(src), self.key(rel))
        except Exception as e:  # noqa: BLE001
            raise self._fail("uploading to", rel, e) from e

    def write_bytes(self, rel: str, data: bytes) -> None:
        try:
            self.fs.pipe_file(self.key(rel), data)
        except Exception as e:  # noqa: BLE001
            raise self._fail("writing", rel, e) from e

    def publish(self, local: Path, rel: str, last: str | None = None) -> int:
        """Upload the local folder to rel: every file, then `last` (the marker readers trust, e.g. index.json),
        then delete objects under rel that the folder no longer holds. Hidden files (locks, temporaries) stay
        local. Called when an asset has just written the folder, so every file is sent (a size or time check
        would miss a file rewritten with other bytes of the same length). -> files uploaded."""
        have = {name for name, _, _ in self.files(rel)}
        files = sorted(p for p in local.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(local).parts))
        names = {p.relative_to(local).as_posix(): p for p in files}
        body = [(name, p) for name, p in names.items() if name != last]
        for i in range(0, len(body), self.BATCH):  # many requests at once (s3fs: concurrently)
            chunk = body[i:i + self.BATCH]
            try:
                self.fs.put([str(p) for _, p in chunk], [self.key(f"{rel}/{n}") for n, _ in chunk])
            except Exception as e:  # noqa: BLE001
                raise self._fail("uploading to", f"{rel}/{chunk[0][0]} (and {len(chunk) - 1} more)", e) from e
        sent = len(body)
        if last and last in names:
            self.put_file(names[last], f"{rel}/{last}")
            sent += 1
        stale = [n for n in have if n not in names]
        for n in stale:
            try:
                self.fs.rm_file(self.key(f"{rel}/{n}"))
            except FileNotFoundError:
                pass
            except Exception as e:  # noqa: BLE001
                raise self._fail("deleting", f"{rel}/{n}", e) from e
        return sent
