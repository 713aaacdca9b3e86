"""Through the graph: a training image that only looks like an eval image to pHash (same hash, other pixels) stays
in the shards, is no leak and no near duplicate, and is listed as not confirmed; a re-encoded brighter copy is
left out; a copy found later in the shards is a leak, confirmed from the shard's own bytes (landing gone)."""

import json
import shutil

from imagefiles import jpeg_bytes, write
from lookalikes import lookalike_pair, near_copy
from pipelines.cli import main
from ssl_ops.shards import load_index

INGEST = "eval_images,raw_images,validated_images,bias_report,image_shards,eval_leakage"


def test_phash_matches_are_confirmed_by_pixels_through_the_graph(tmp_path, capsys):
    home = tmp_path / "home"
    a, b = lookalike_pair()
    land = home / "landing" / "b1"
    write(land / "lookalike.png", b)
    write(land / "copy.jpg", near_copy(a))
    for i in range(10):
        write(land / f"x{i}.jpg", jpeg_bytes(500 + i))
    write(home / "eval" / "a" / "face.png", a)
    for i in range(11):
        write(home / "eval" / ("a" if i < 5 else "b") / f"e{i}.jpg", jpeg_bytes(900 + i))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("workers: 1\n")
    assert main(["run", "--home", str(home), "--config", str(cfg), "--select", INGEST]) == 0

    idx = load_index(home / "shards" / "b1" / "index.json")
    assert [(e["path"], e["reason"]) for e in idx.excluded] == [("copy.jpg", "eval_copy_near")]
    assert idx.samples == 11  # the look-alike is trained on
    leak = json.loads((home / "reports" / "eval" / "leakage.json").read_text())
    assert leak["passed"] and leak["near"] == [] and leak["max_pixel_difference"] == 16
    assert [(u["eval"], u["train"]) for u in leak["unconfirmed"]] == [("a/face.png", "b1/lookalike.png")]
    assert leak["unconfirmed"][0]["difference"] > 16
    nd = json.loads((home / "reports" / "b1" / "bias.json").read_text())["near_duplicates"]
    assert nd["clusters"] == [] and [(m["path"], m["matches"]) for m in nd["not_confirmed"]] == [
        ("copy.jpg", "lookalike.png")]

    # the eval set gains a copy of a sharded image; the landing folder is gone: the pixels come from the shards
    write(home / "eval" / "b" / "x3 brighter.jpg", near_copy((land / "x3.jpg").read_bytes(), brightness=1.1))
    shutil.rmtree(land)
    capsys.readouterr()
    assert main(["run", "--home", str(home), "--config", str(cfg), "--select", "eval_images,eval_leakage"]) == 1
    assert "BLOCKED: eval_leakage:leakage" in capsys.readouterr().err
    leak = json.loads((home / "reports" / "eval" / "leakage.json").read_text())
    assert [(m["eval"], m["train"]) for m in leak["near"]] == [("b/x3 brighter.jpg", "b1/x3.jpg")]
    assert leak["near"][0]["difference"] is not None and leak["near"][0]["difference"] <= 16  # read and confirmed
    assert [u["train"] for u in leak["unconfirmed"]] == ["b1/lookalike.png"]  # still told apart, from the shard
