"""Property-based tests (hypothesis) of ingestion and sharding over hostile file names, attribute values,
image sizes, modes and formats, and damaged files:

- every file is accounted for: accepted + quarantined = seen, each path exactly once;
- accepted rows carry the attributes the sidecar gave them (after its documented trimming);
- the shards read back (tarfile and webdataset) equal the manifest: the same sample ids, the original bytes,
  and a .json whose attributes equal the manifest's;
- writing again gives byte-identical shards.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ssl_ops.ingest import REASONS, ImageLimits, scan_batch
from ssl_ops.ingest.metadata import SIDECARS
from ssl_ops.shards import ShardConfig, shard_batch

# file names: any unicode a Linux file name can hold (no '/', no NUL, no lone surrogates), up to 60 characters;
# backslashes and NFD forms are left out because the sidecar matches paths after '\\' -> '/' and NFC
# normalisation (documented in ssl_ops/ingest/metadata.py), which would merge distinct files' rows.
NAME_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00\\")
names = st.text(NAME_CHARS, min_size=1, max_size=60).filter(
    lambda n: n not in (".", "..") and n not in SIDECARS and len(n.encode()) <= 200
    and unicodedata.normalize("NFC", n) == n and not n.startswith("./"))
# attribute values: anything, markup and control characters included, sometimes very long
values = st.one_of(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40),
                   st.sampled_from(["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "a|b", "`x`",
                                    "photo (dslr)", "art+painting", "site#3", "a,b", "x&y", '"quoted"',
                                    "line\nbreak", "\x1b[31mred\x1b[0m", "\u202eevil", "é" * 3000]))
MODES = ("RGB", "L", "RGBA", "P", "I;16", "1", "CMYK", "LA")
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")


def image_bytes(w: int, h: int, mode: str, fmt: str, seed: int) -> bytes:
    import numpy as np

    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (max(h // 4, 1), max(w // 4, 1), 3), dtype=np.uint8)).resize((w, h))
    try:
        im = im.convert(mode) if mode != "I;16" else im.convert("L").convert("I;16")
        buf = io.BytesIO()
        im.save(buf, fmt)
    except (OSError, ValueError, KeyError):
        buf = io.BytesIO()  # the format cannot hold the mode: store RGB
        im.convert("RGB").save(buf, fmt)
    return buf.getvalue()


@st.composite
def batches(draw):
    """{relative path: bytes}, {relative path: {attribute: value}} for a metadata.csv."""
    n = draw(st.integers(1, 7))
    files: dict[str, bytes] = {}
    for i in range(n):
        parts = draw(st.lists(names, min_size=1, max_size=3))
        rel = "/".join(parts)
        if any(rel == p or rel.startswith(p + "/") or p.startswith(rel + "/") for p in files):
            continue  # a file cannot also be a folder
        kind = draw(st.sampled_from(["image", "image", "image", "garbage", "empty", "truncated", "copy"]))
        if kind == "image" or (kind == "copy" and not files):
            data = image_bytes(draw(st.integers(1, 48)), draw(st.integers(1, 48)), draw(st.sampled_from(MODES)),
                               draw(st.sampled_from(FORMATS)), draw(st.integers(0, 10**6)))
        elif kind == "copy":
            data = files[draw(st.sampled_from(sorted(files)))]
        elif kind == "garbage":
            data = draw(st.binary(min_size=1, max_size=200))
        elif kind == "empty":
            data = b""
        else:
            full = image_bytes(40, 40, "RGB", "JPEG", i)
            data = full[:draw(st.integers(1, len(full) - 1))]
        files[rel] = data
    attrs = draw(st.lists(st.sampled_from(["domain", "site", "note"]), unique=True, max_size=3))
    meta = {rel: {a: draw(values) for a in attrs} for rel in files if draw(st.booleans())} if attrs else {}
    return files, attrs, meta


def write_batch(root: Path, files: dict, attrs: list, meta: dict) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    if attrs:
        with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["path", *attrs])
            for rel, row in meta.items():
                w.writerow([rel, *(row[a] for a in attrs)])


def expected_attr(v: str | None) -> str | None:
    return (v.strip() or None) if v is not None else None


def read_shards(out: Path, index) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    for s in index.shards:
        with tarfile.open(out / s["name"]) as t:
            n = 0
            for m in t.getmembers():
                key, ext = m.name.split(".", 1)
                samples.setdefault(key, {})[ext] = t.extractfile(m).read()
                n += ext == "json"
            assert n == s["samples"]
        assert hashlib.sha256((out / s["name"]).read_bytes()).hexdigest() == s["sha256"]
    return samples


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batches())
def test_every_file_is_accounted_for_and_the_shards_equal_the_manifest(batch):
    files, attrs, meta = batch
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "landing" / "b1"
        write_batch(root, files, attrs, meta)
        r = scan_batch(root, "b1", ImageLimits(), workers=1)
        acc, quar = r.accepted.to_pylist(), r.quarantine.to_pylist()
        # accounted for: every file once, accepted or quarantined with a known reason
        assert r.seen == len(files) == len(acc) + len(quar)
        assert sorted(x["path"] for x in acc + quar) == sorted(files)
        assert all(q["reason"] in REASONS for q in quar)
        for row in acc:
            data = files[row["path"]]
            assert row["sample_id"] == hashlib.sha256(data).hexdigest() and row["bytes"] == len(data)
            for a in attrs:
                assert row["attr_" + a] == expected_attr(meta.get(row["path"], {}).get(a))
        assert len({row["sample_id"] for row in acc}) == len(acc)  # duplicates quarantined, not accepted twice
        assert sorted(r.files_without_metadata) == sorted(x["path"] for x in acc if attrs and x["path"] not in meta)

        out = Path(tmp) / "shards" / "b1"
        index = shard_batch(r.accepted, root, out, ShardConfig(max_samples=3))
        assert index.samples == len(acc) == sum(s["samples"] for s in index.shards)
        samples = read_shards(out, index)
        assert set(samples) == {row["sample_id"] for row in acc}
        for row in acc:
            got = samples[row["sample_id"]]
            image = [v for k, v in got.items() if k != "json"]
            assert image == [files[row["path"]]]  # the original bytes, never re-encoded
            js = json.loads(got["json"])
            assert js["path"] == row["path"] and js["batch"] == "b1"
            assert js["attributes"] == {a: row["attr_" + a] for a in attrs}
        if index.shards:  # webdataset itself reads them back the same
            import webdataset as wds

            keys = [s["__key__"] for s in wds.WebDataset([str(out / s["name"]) for s in index.shards],
                                                          shardshuffle=False, empty_check=False)]
            assert sorted(keys) == sorted(samples)
        # deterministic: written again elsewhere, byte-identical shards and the same digest
        again = shard_batch(r.accepted, root, Path(tmp) / "again", ShardConfig(max_samples=3))
        assert again.digest == index.digest
        for s in index.shards:
            assert (out / s["name"]).read_bytes() == (Path(tmp) / "again" / s["name"]).read_bytes()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=st.integers(1, 300), h=st.integers(1, 300), mode=st.sampled_from(MODES + ("I", "F", "YCbCr", "PA")),
       fmt=st.sampled_from(FORMATS), seed=st.integers(0, 1000),
       min_side=st.integers(1, 64), max_side=st.integers(64, 400), max_pixels=st.integers(1, 90_000))
def test_image_limits_hold_for_any_size_and_mode(w, h, mode, fmt, seed, min_side, max_side, max_pixels):
    """Any size and mode: accepted only within the limits, else quarantined with the reason the limit names."""
    data = image_bytes(w, h, mode, fmt, seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "x").write_bytes(data)
        r = scan_batch(root, "b", ImageLimits(min_side=min_side, max_side=max_side, max_pixels=max_pixels), workers=1)
        assert r.seen == 1
        if r.accepted.num_rows:
            row = r.accepted.to_pylist()[0]
            assert min_side <= min(row["width"], row["height"]) and max(row["width"], row["height"]) <= max_side
            assert row["width"] * row["height"] <= max_pixels
        else:
            q = r.quarantine.to_pylist()[0]
            expect = ("decompression_bomb" if w * h > max_pixels else "too_small" if min(w, h) < min_side
                      else "too_large" if max(w, h) > max_side else None)
            assert q["reason"] == expect, (q, w, h)


@pytest.mark.parametrize("seed", range(3))
def test_a_sidecar_of_hostile_values_round_trips(tmp_path, seed):
    """The fixed corpus of hostile values as attributes: read back exactly (trimmed) into the manifest."""
    import random

    corpus = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "a|b|c", "`code` ``x``", "photo (dslr)",
              "art+painting", "site#3", "a,b", "x&y", '"q"', "multi\nline", "\x1b[2J\x1b[31mred", "\u202eevil",
              "x" * 100_000, "\t padded \t"]
    random.Random(seed).shuffle(corpus)
    files = {f"f{i}.png": image_bytes(16, 16, "RGB", "PNG", i) for i in range(len(corpus))}
    meta = {f"f{i}.png": {"site": v} for i, v in enumerate(corpus)}
    write_batch(tmp_path, files, ["site"], meta)
    r = scan_batch(tmp_path, "b", ImageLimits(), workers=1)
    got = dict(zip(r.accepted.column("path").to_pylist(), r.accepted.column("attr_site").to_pylist()))
    assert got == {p: expected_attr(m["site"]) for p, m in meta.items()}
