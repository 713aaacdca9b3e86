"""The pure helpers behind `sslpipe lineage` (ssl_ops.lineage_index): spec and image parsing, filtered
manifest reads, shard member look-up, and the comparison of a batch's shards with what a model recorded."""

import hashlib
import io
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ssl_ops.lineage_index import (LineageInputError, compare_sharding, image_sample_id, manifest_rows,
                                   parse_model_spec, shard_members)


@pytest.mark.parametrize("spec,expected", [("ssl-encoder@3", ("ssl-encoder", "3")),
                                           ("ssl-encoder@champion", ("ssl-encoder", "champion")),
                                           ("my model.v2@007", ("my model.v2", "7"))])
def test_specs(spec, expected):
    assert parse_model_spec(spec) == expected


@pytest.mark.parametrize("spec", ["ssl-encoder", "@3", "a@b@c", "ssl-encoder@", "ssl-encoder@0", " x@1",
                                  "ssl-encoder@ch ampion", "ssl-encoder@\x1b[2J", "x/y@1"])
def test_malformed_specs(spec):
    with pytest.raises(LineageInputError, match="MODEL@VERSION or MODEL@ALIAS"):
        parse_model_spec(spec)


def test_image_argument(tmp_path):
    f = tmp_path / "a.png"
    f.write_bytes(b"bytes")
    assert image_sample_id(str(f)) == (hashlib.sha256(b"bytes").hexdigest(), str(f.resolve()))
    assert image_sample_id("AB" * 32) == ("ab" * 32, None)
    for bad, why in ((str(tmp_path / "none.png"), "no such file"), ("abc", "3 hex digits"),
                     (str(tmp_path), "not a regular file")):
        with pytest.raises(LineageInputError, match=why):
            image_sample_id(bad)


def test_manifest_rows_reads_only_the_matching_rows(tmp_path):
    p = tmp_path / "accepted.parquet"
    ids = [f"{i:064x}" for i in range(5000)]
    pq.write_table(pa.table({"sample_id": ids, "path": [f"{i}.png" for i in range(5000)]}), p, row_group_size=500)
    assert manifest_rows(p, ids[4321]) == [{"sample_id": ids[4321], "path": "4321.png"}]
    assert manifest_rows(p, "f" * 64) == [] and manifest_rows(tmp_path / "missing.parquet", ids[0]) == []


def test_shard_members_and_sharding(tmp_path):
    def shard(name, keys):
        with tarfile.open(tmp_path / name, "w") as tar:
            for k in keys:
                for ext in ("json", "png"):
                    ti = tarfile.TarInfo(f"{k}.{ext}")
                    ti.size = 1
                    tar.addfile(ti, io.BytesIO(b"x"))
    a, b = "a" * 64, "b" * 64
    shard("shard-000000.tar", [a])
    shard("shard-000001.tar", [b])
    index = {"digest": "now", "shards": [{"name": "shard-000000.tar", "samples": 1, "bytes": 1, "sha256": "s0"},
                                         {"name": "shard-000001.tar", "samples": 1, "bytes": 1, "sha256": "s1"}]}
    assert shard_members(tmp_path, index, b) == {"shard-000001.tar": [f"{b}.json", f"{b}.png"]}
    assert shard_members(tmp_path, index, "c" * 64) == {}
    same = compare_sharding("b1", "now", [["shard-000000.tar", 1, "s0"], ["shard-000001.tar", 1, "s1"]], index)
    assert same.status == "unchanged" and [s["same_as_training"] for s in same.shards] == [True, True]
    moved = compare_sharding("b1", "then", [["shard-000000.tar", 1, "s0"], ["shard-000002.tar", 1, "s2"]], index)
    assert moved.status == "resharded" and [s["same_as_training"] for s in moved.shards] == [True, None]
    assert moved.gone_shards == [{"name": "shard-000002.tar", "samples": 1, "sha256": "s2"}]
    assert compare_sharding("b1", "then", None, None).status == "no_index"
