"""The eval set: class folders or labels.csv; unlabeled images quarantined; leakage found by bytes and pHash."""

import io

import numpy as np
import pytest
from PIL import Image

from imagefiles import jpeg_bytes, png_bytes, write
from ssl_ops.evalset import eval_digest, scan_eval
from ssl_ops.ingest import ImageLimits, scan_batch
from ssl_ops.ingest.metadata import MetadataError
from ssl_ops.leakage import copies_of_eval, find_leaks


def test_class_folders(tmp_path):
    for c in ("cat", "dog"):
        for i in range(3):
            write(tmp_path / "ev" / c / f"{i}.jpg", jpeg_bytes(hash((c, i)) % 1000))
    write(tmp_path / "ev" / "stray.jpg", jpeg_bytes(999))
    r = scan_eval(tmp_path / "ev", ImageLimits(), workers=1)
    labels = dict(zip(r.accepted.column("path").to_pylist(), r.accepted.column("attr_label").to_pylist()))
    assert labels == {f"{c}/{i}.jpg": c for c in ("cat", "dog") for i in range(3)}
    assert r.quarantine.to_pylist()[0]["path"] == "stray.jpg" and r.quarantine.to_pylist()[0]["reason"] == "unlabeled"
    assert r.seen == r.accepted.num_rows + r.quarantine.num_rows == 7


def test_labels_csv_with_groups_and_digest(tmp_path):
    d = tmp_path / "ev"
    for i in range(4):
        write(d / "img" / f"{i}.jpg", jpeg_bytes(i))
    (d / "labels.csv").write_text("path,label,domain\n" + "".join(f"img/{i}.jpg,{i % 2},d{i}\n" for i in range(3)))
    r = scan_eval(d, ImageLimits(), workers=1)
    assert r.accepted.column("attr_domain").to_pylist() == ["d0", "d1", "d2"]
    assert r.quarantine.column("reason").to_pylist() == ["unlabeled"]
    d1 = eval_digest(r.accepted)
    assert d1 == eval_digest(r.accepted.take([2, 0, 1]))
    (d / "labels.csv").write_text("path,label,domain\n" + "".join(f"img/{i}.jpg,{(i + 1) % 2},d{i}\n" for i in range(3)))
    assert eval_digest(scan_eval(d, ImageLimits(), workers=1).accepted) != d1  # a relabel changes the digest


def test_labels_csv_needs_a_label_column(tmp_path):
    write(tmp_path / "ev" / "a.jpg", jpeg_bytes(1))
    (tmp_path / "ev" / "labels.csv").write_text("path,class\na.jpg,x\n")
    with pytest.raises(MetadataError, match="'label' column"):
        scan_eval(tmp_path / "ev", ImageLimits())


def test_leakage_by_bytes_and_by_near_copy(tmp_path):
    src = Image.fromarray(np.random.default_rng(0).integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize((64, 64), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    src.save(buf, "PNG")
    recoded = io.BytesIO()
    src.resize((96, 96)).save(recoded, "JPEG", quality=90)  # an upscaled, re-encoded copy
    exact = jpeg_bytes(5)
    write(tmp_path / "train" / "t1.jpg", exact)
    write(tmp_path / "train" / "t2.png", buf.getvalue())
    write(tmp_path / "train" / "t3.jpg", jpeg_bytes(6))
    for c, data in (("a", exact), ("a", recoded.getvalue()), ("b", jpeg_bytes(7))):
        write(tmp_path / "ev" / c / f"{len(list((tmp_path / 'ev').rglob('*')))}.jpg", data)
    train = scan_batch(tmp_path / "train", "b1", ImageLimits(), workers=1).accepted
    ev = scan_eval(tmp_path / "ev", ImageLimits(), workers=1).accepted
    leaks = find_leaks(ev, train, max_bits=4)
    assert [m["train"] for m in leaks.exact] == ["b1/t1.jpg"]
    assert [m["train"] for m in leaks.near] == ["b1/t2.png"] and not leaks.passed
    assert "1 exact and 1 near" in leaks.summary()
    assert find_leaks(ev, train.slice(2), max_bits=4).passed


def test_flat_images_leak_only_by_identical_bytes(tmp_path):
    write(tmp_path / "train" / "grey.png", png_bytes("L", value=128))
    write(tmp_path / "train" / "white.png", png_bytes("L", value=250))
    write(tmp_path / "ev" / "a" / "dark.png", png_bytes("L", value=10))  # flat too, different bytes: not a copy
    write(tmp_path / "ev" / "a" / "same grey.png", png_bytes("L", value=128))  # the same bytes: a copy
    train = scan_batch(tmp_path / "train", "b1", ImageLimits(), workers=1).accepted
    ev = scan_eval(tmp_path / "ev", ImageLimits(), workers=1).accepted
    assert len(set(train.column("phash").to_pylist() + ev.column("phash").to_pylist())) == 1  # flat: one hash
    leaks = find_leaks(ev, train, max_bits=4)
    assert [(m["eval"], m["train"]) for m in leaks.exact] == [("a/same grey.png", "b1/grey.png")] and leaks.near == []
    assert [(c["path"], c["reason"]) for c in copies_of_eval(ev, train, 4)] == [("grey.png", "eval_copy_exact")]


def test_a_labeled_copy_wins_over_an_unlabeled_one_and_label_conflicts_are_reported(tmp_path):
    d = tmp_path / "ev"
    x, y = jpeg_bytes(1), jpeg_bytes(2)
    write(d / "backup_copy.jpg", x)  # sorts first, but has no label
    write(d / "img" / "x.jpg", x)
    write(d / "img" / "y.jpg", y)
    write(d / "img" / "y again.jpg", y)
    (d / "labels.csv").write_text("path,label\nimg/x.jpg,cat\nimg/y again.jpg,dog\nimg/y.jpg,cat\n")
    r = scan_eval(d, ImageLimits(), workers=1)
    assert dict(zip(r.accepted.column("path").to_pylist(), r.accepted.column("attr_label").to_pylist())) == {
        "img/x.jpg": "cat", "img/y again.jpg": "dog"}
    q = {row["path"]: row for row in r.quarantine.to_pylist()}
    assert q["backup_copy.jpg"]["reason"] == "unlabeled"
    assert q["img/y.jpg"]["reason"] == "duplicate"
    assert q["img/y.jpg"]["detail"] == "same bytes as eval/img/y again.jpg; attributes differ: label=dog (kept) vs cat"
