"""A pHash match is confirmed by the pixels before an image is called a leak, left out as a copy of an eval image,
or counted as a near duplicate: different pictures with the same pHash (a constructed look-alike; two different
people's aligned faces from PACS) are listed apart with their mean pixel difference; true near copies (re-encoded,
brighter) still count, read from folders and from shards."""

import json

import numpy as np
import pytest

from data_contracts.contract import BiasRules, ContractError, load_contract
from imagefiles import jpeg_bytes, write
from lookalikes import PACS_SKETCHES, lookalike_pair, near_copy, pacs_pair
from ssl_ops.bias import bias_report
from ssl_ops.bias.near_duplicates import near_duplicates
from ssl_ops.escape import md_code
from ssl_ops.evalset import scan_eval
from ssl_ops.ingest import ImageLimits, scan_batch
from ssl_ops.leakage import copies_of_eval, find_leaks
from ssl_ops.phash import hamming
from ssl_ops.pixel_match import (MAX_PIXEL_DIFFERENCE, MIN_CORRELATION, FolderSource, PixelMatcher, ShardSource,
                                 correlation, mean_pixel_difference, raw_pixel_difference, thumbnail)
from ssl_ops.shards import ShardConfig, shard_batch


def scan(folder, batch="b1"):
    return scan_batch(folder, batch, ImageLimits(), workers=1).accepted


def matcher(tmp_path, train=None):
    return PixelMatcher({"eval": FolderSource(tmp_path / "ev"),
                         "train": train or FolderSource(lambda b: tmp_path / "land" / b)})


def phash_bits(table, a, b):
    h = dict(zip(table.column("path").to_pylist(), table.column("phash").to_pylist()))
    return int(hamming(np.uint64(h[a]), np.uint64(h[b])))


def eval_set(tmp_path, first: bytes):
    write(tmp_path / "ev" / "a" / "face.png", first)
    for i in range(3):
        write(tmp_path / "ev" / "b" / f"other{i}.jpg", jpeg_bytes(700 + i))
    return scan_eval(tmp_path / "ev", ImageLimits(), workers=1).accepted


def test_the_measure_ignores_brightness_and_contrast_not_structure():
    rng = np.random.default_rng(0)
    a = rng.uniform(40, 200, (32, 32))
    assert raw_pixel_difference(a, a + 20) == pytest.approx(20)
    assert mean_pixel_difference(a, a + 20) == pytest.approx(0, abs=1e-9)  # brighter: the same picture
    assert mean_pixel_difference(a, 1.3 * a) == pytest.approx(0, abs=1e-9)  # more contrast: the same picture
    assert mean_pixel_difference(a, rng.uniform(40, 200, (32, 32))) > 40  # another picture
    assert mean_pixel_difference(a, rng.uniform(40, 200, (32, 32))) == pytest.approx(
        mean_pixel_difference(rng.uniform(40, 200, (32, 32)), a), rel=1)  # symmetric in kind
    x, y = rng.uniform(0, 255, (32, 32)), rng.uniform(0, 255, (32, 32))
    assert mean_pixel_difference(x, y) == pytest.approx(mean_pixel_difference(y, x))
    assert correlation(a, 1.3 * a + 20) == pytest.approx(1) and abs(correlation(x, y)) < 0.2


def test_thumbnails_are_64_px_luminance_of_any_image():
    from imagefiles import png_bytes

    for data in (jpeg_bytes(1, size=(300, 200)), png_bytes("I;16", size=(40, 40)), png_bytes("P"), b"not an image"):
        t = thumbnail(data)
        assert t is None if data == b"not an image" else (t.shape == (64, 64) and 0 <= t.min() <= t.max() <= 255)


def test_the_default_thresholds_are_the_contracts():
    ev, un = load_contract("eval_images"), load_contract("unlabeled_images")
    assert ev.leakage_max_pixel_difference == un.bias.near_duplicate_max_pixel_difference == MAX_PIXEL_DIFFERENCE == 16
    assert ev.leakage_min_correlation == un.bias.near_duplicate_min_correlation == MIN_CORRELATION == 0.85


@pytest.mark.parametrize("key,shipped,value", [("max_pixel_difference", "16", -1), ("max_pixel_difference", "16", 300),
                                               ("max_pixel_difference", "16", "high"), ("min_correlation", "0.85", 1.5)])
def test_the_leakage_thresholds_are_checked(tmp_path, key, shipped, value):
    from data_contracts.contract import CONTRACTS_DIR

    p = tmp_path / "c.yaml"
    text = (CONTRACTS_DIR / "eval_images.yaml").read_text()
    p.write_text(text.replace(f"{key}: {shipped}", f"{key}: {value}"))
    with pytest.raises(ContractError, match=f"leakage.*{key}"):
        load_contract(p)
    p.write_text(text.replace(f"{key}: {shipped}", f"{key}: 0.5"))
    assert getattr(load_contract(p), f"leakage_{key}") == 0.5
    p.write_text((CONTRACTS_DIR / "unlabeled_images.yaml").read_text().replace(
        "near_duplicate_min_correlation: 0.85", "near_duplicate_min_correlation: -2"))
    with pytest.raises(ContractError, match="bias.near_duplicate_min_correlation"):
        load_contract(p)


def test_a_lookalike_with_the_same_phash_is_no_leak_and_no_copy(tmp_path):
    a, b = lookalike_pair()
    ev = eval_set(tmp_path, a)
    write(tmp_path / "land" / "b1" / "lookalike.png", b)
    write(tmp_path / "land" / "b1" / "unrelated.jpg", jpeg_bytes(5))
    train = scan(tmp_path / "land" / "b1")
    ta, tb = thumbnail(a), thumbnail(b)
    e_hash = np.uint64(ev.column("phash").to_pylist()[ev.column("path").to_pylist().index("a/face.png")])
    assert int(hamming(e_hash, np.uint64(train.column("phash").to_pylist()[train.column("path").to_pylist().index("lookalike.png")]))) <= 4
    assert mean_pixel_difference(ta, tb) > 1.5 * MAX_PIXEL_DIFFERENCE
    assert not find_leaks(ev, train, 4).passed  # pHash alone calls it a leak: the false positive being fixed

    leaks = find_leaks(ev, train, 4, matcher(tmp_path))
    assert leaks.passed and leaks.near == [] and leaks.exact == []
    [u] = leaks.unconfirmed
    assert (u["eval"], u["train"]) == ("a/face.png", "b1/lookalike.png") and u["difference"] > 1.5 * MAX_PIXEL_DIFFERENCE
    assert "1 pHash match(es) not confirmed (mean pixel difference" in leaks.summary()
    assert json.loads(json.dumps(leaks.__dict__))["unconfirmed"][0]["bits"] == u["bits"]  # what leakage.json holds

    rejected = []
    assert copies_of_eval(ev, train, 4, matcher(tmp_path), rejected) == []  # kept in the shards
    assert [(r["path"], r["matches"]) for r in rejected] == [("lookalike.png", "a/face.png")]
    assert rejected[0]["difference"] == u["difference"]


def test_a_true_near_copy_is_still_a_leak_and_left_out(tmp_path):
    a, _ = lookalike_pair()
    ev = eval_set(tmp_path, a)
    write(tmp_path / "land" / "b1" / "copy.jpg", near_copy(a))  # re-encoded as JPEG, 8% brighter
    write(tmp_path / "land" / "b1" / "unrelated.jpg", jpeg_bytes(5))
    train = scan(tmp_path / "land" / "b1")
    leaks = find_leaks(ev, train, 4, matcher(tmp_path))
    assert [(m["eval"], m["train"]) for m in leaks.near] == [("a/face.png", "b1/copy.jpg")] and not leaks.passed
    assert leaks.near[0]["difference"] <= 2 and leaks.unconfirmed == []
    copies = copies_of_eval(ev, train, 4, matcher(tmp_path))
    assert [(c["path"], c["reason"]) for c in copies] == [("copy.jpg", "eval_copy_near")]


def test_confirmation_reads_the_shards_by_offset(tmp_path):
    """eval_leakage reads training images from the shards: only the candidates', found by tar member offset."""
    a, b = lookalike_pair()
    ev = eval_set(tmp_path, a)
    write(tmp_path / "land" / "b1" / "copy.jpg", near_copy(a))
    write(tmp_path / "land" / "b1" / "lookalike.png", b)
    for i in range(5):
        write(tmp_path / "land" / "b1" / f"x{i}.jpg", jpeg_bytes(40 + i))
    train = scan(tmp_path / "land" / "b1")
    shard_batch(train, tmp_path / "land" / "b1", tmp_path / "shards", ShardConfig(max_samples=3))
    src = ShardSource.of(sorted((tmp_path / "shards").glob("shard-*.tar")))
    assert set(src.members) == set(train.column("sample_id").to_pylist())
    m = matcher(tmp_path, train=src)
    # eval-centric: the closest confirmed candidate is the leak; with only the look-alike, it is listed apart
    leaks = find_leaks(ev, train, 4, m)
    assert [m_["train"] for m_ in leaks.near] == ["b1/copy.jpg"]
    only_lookalike = train.filter(np.array([p != "copy.jpg" for p in train.column("path").to_pylist()]))
    leaks = find_leaks(ev, only_lookalike, 4, m)
    assert leaks.passed and [u["train"] for u in leaks.unconfirmed] == ["b1/lookalike.png"]
    assert m.images_read == 3  # the eval image, the copy and the look-alike: nothing else was read


def test_an_image_that_cannot_be_read_back_stays_a_match(tmp_path):
    """A candidate whose bytes are gone or changed since ingestion cannot be cleared by the pixels: kept, to be safe."""
    a, b = lookalike_pair()
    ev = eval_set(tmp_path, a)
    write(tmp_path / "land" / "b1" / "lookalike.png", b)
    write(tmp_path / "land" / "b1" / "unrelated.jpg", jpeg_bytes(5))
    train = scan(tmp_path / "land" / "b1")
    write(tmp_path / "land" / "b1" / "lookalike.png", jpeg_bytes(6))  # replaced after ingestion
    leaks = find_leaks(ev, train, 4, matcher(tmp_path))
    assert [m["train"] for m in leaks.near] == ["b1/lookalike.png"] and leaks.near[0]["difference"] is None


def test_near_duplicates_count_confirmed_pairs_only(tmp_path):
    a, b = lookalike_pair()
    d = tmp_path / "land"
    write(d / "b0" / "old copy.jpg", near_copy(a, brightness=0.95, quality=70))
    write(d / "b0" / "old lookalike.png", b)
    for i in range(3):
        write(d / "b0" / f"r{i}.jpg", jpeg_bytes(300 + i))
    write(d / "b1" / "a.png", a)
    write(d / "b1" / "a again.jpg", near_copy(a))
    write(d / "b1" / "lookalike.png", b)
    for i in range(7):
        write(d / "b1" / f"x{i}.jpg", jpeg_bytes(200 + i))
    ref, cur = scan(d / "b0", "b0"), scan(d / "b1", "b1")
    assert phash_bits(cur, "a.png", "lookalike.png") <= 4
    sources = {"batch": FolderSource(d / "b1"), "reference": FolderSource(lambda batch: d / batch)}

    old = bias_report("b1", cur, ref, BiasRules(), {})  # pHash alone: the look-alike joins the cluster
    assert old.near_duplicates.clusters == [["a again.jpg", "a.png", "lookalike.png"]]

    r = bias_report("b1", cur, ref, BiasRules(), {}, sources)
    nd = r.near_duplicates
    assert nd.clusters == [["a again.jpg", "a.png"]] and nd.images_in_clusters == 2 and nd.share == 0.2
    assert nd.flagged  # 20% > 5%: the true copies still count
    assert sorted((m["path"], m["matches"]) for m in nd.cross_batch) == [("a again.jpg", "b0/old copy.jpg"),
                                                                         ("a.png", "b0/old copy.jpg"),
                                                                         ("lookalike.png", "b0/old lookalike.png")]
    # the look-alike matched a.png and its copy in the batch, by pHash only: listed apart, not counted
    assert sorted((m["path"], m["matches"]) for m in nd.not_confirmed) == [("a again.jpg", "lookalike.png"),
                                                                           ("a.png", "lookalike.png")]
    assert nd.not_confirmed_count == 2 and all(m["difference"] > MAX_PIXEL_DIFFERENCE for m in nd.not_confirmed)
    assert "2 pHash match(es) not confirmed by the pixels" in r.findings("near_duplicates")
    md = r.to_markdown()
    assert f"not counted: {md_code('a.png')} ~ {md_code('lookalike.png')}" in md and "pHash match not confirmed: mean pixel difference" in md
    assert json.loads(r.to_json())["near_duplicates"]["max_pixel_difference"] == 16


def test_near_duplicates_without_a_matcher_are_unchanged():
    nd = near_duplicates(["a", "b"], np.array([5, 5], np.uint64), 4, 0.05)
    assert nd.clusters == [["a", "b"]] and nd.not_confirmed == [] and nd.max_pixel_difference is None


def test_real_faces_of_two_people_four_bits_apart_are_not_copies(tmp_path):
    faces = pacs_pair()
    if faces is None:
        pytest.skip("../shared/datasets/pacs-64 is absent")
    ev = eval_set(tmp_path, faces[0])
    write(tmp_path / "land" / "b1" / "someone else.jpg", faces[1])
    write(tmp_path / "land" / "b1" / "unrelated.jpg", jpeg_bytes(5))
    train = scan(tmp_path / "land" / "b1")
    assert not find_leaks(ev, train, 4).passed  # the pHash false positive
    leaks = find_leaks(ev, train, 4, matcher(tmp_path))
    assert leaks.passed and leaks.unconfirmed[0]["difference"] == pytest.approx(33.8, abs=0.1)
    assert leaks.unconfirmed[0]["raw"] == pytest.approx(38.2, abs=0.1)
    assert leaks.unconfirmed[0]["correlation"] == pytest.approx(0.647, abs=0.002)
    assert copies_of_eval(ev, train, 4, matcher(tmp_path)) == []
    write(tmp_path / "land" / "b2" / "face.jpg", faces[0])
    write(tmp_path / "land" / "b2" / "someone else.jpg", faces[1])
    write(tmp_path / "land" / "b2" / "same face brighter.jpg", near_copy(faces[0], brightness=1.1, quality=85))
    b2 = scan(tmp_path / "land" / "b2", "b2")
    nd = bias_report("b2", b2, None, BiasRules(), {}, {"batch": FolderSource(tmp_path / "land" / "b2")}).near_duplicates
    assert nd.clusters == [["face.jpg", "same face brighter.jpg"]] and nd.not_confirmed_count == 2


def test_real_sketches_of_a_giraffe_and_a_guitar_are_not_copies(tmp_path):
    """Thin lines on white: a small grey-level difference; the correlation tells them apart."""
    pair = pacs_pair(PACS_SKETCHES)
    if pair is None:
        pytest.skip("../shared/datasets/pacs-64 is absent")
    write(tmp_path / "land" / "b1" / "giraffe.jpg", pair[0])
    write(tmp_path / "land" / "b1" / "guitar.jpg", pair[1])
    write(tmp_path / "land" / "b1" / "giraffe again.jpg", near_copy(pair[0], brightness=0.95, quality=85))
    b1 = scan(tmp_path / "land" / "b1")
    assert phash_bits(b1, "giraffe.jpg", "guitar.jpg") <= 4
    r = bias_report("b1", b1, None, BiasRules(), {}, {"batch": FolderSource(tmp_path / "land" / "b1")})
    nd = r.near_duplicates
    assert nd.clusters == [["giraffe again.jpg", "giraffe.jpg"]]
    pair_rejected = [m for m in nd.not_confirmed if {m["path"], m["matches"]} == {"giraffe.jpg", "guitar.jpg"}]
    assert pair_rejected and pair_rejected[0]["difference"] <= MAX_PIXEL_DIFFERENCE  # the difference alone: a copy
    assert pair_rejected[0]["correlation"] < 0.5
