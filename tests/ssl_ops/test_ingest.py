"""Ingestion of a batch folder: every awkward file gets a reason, nothing accepted is lost."""

import os

import numpy as np
import pytest
from PIL import Image

from imagefiles import ZOO_EXPECTED, jpeg_bytes, png_bytes, write
from ssl_ops.ingest import ImageLimits, list_batch_files, scan_batch
from ssl_ops.ingest import scan as scan_mod
from ssl_ops.ingest.metadata import MetadataError
from ssl_ops.ingest.probe import REASONS, probe_image


def outcome(result):
    acc = {p: "accepted" for p in result.accepted.column("path").to_pylist()}
    acc.update(dict(zip(result.quarantine.column("path").to_pylist(), result.quarantine.column("reason").to_pylist())))
    return acc


def test_every_awkward_file_gets_its_reason_and_all_are_accounted_for(zoo):
    r = scan_batch(zoo, "b1", ImageLimits(), workers=1)
    assert outcome(r) == ZOO_EXPECTED
    assert r.seen == len(ZOO_EXPECTED) == r.accepted.num_rows + r.quarantine.num_rows
    assert set(r.quarantine.column("reason").to_pylist()) <= set(REASONS)
    dup = [q for q in r.quarantine.to_pylist() if q["reason"] == "duplicate"][0]
    assert dup["duplicate_of"] == "b1/good.jpg" and dup["sample_id"] == r.accepted.to_pylist()[
        r.accepted.column("path").to_pylist().index("good.jpg")]["sample_id"]
    details = dict(zip(r.quarantine.column("path").to_pylist(), r.quarantine.column("detail").to_pylist()))
    assert "9000x9000" in details["bomb.png"] and "1x1" in details["tiny.png"]


def test_modes_are_recorded_and_16_bit_is_scaled_not_clipped(zoo):
    r = scan_batch(zoo, "b1", ImageLimits(), workers=1)
    rows = {row["path"]: row for row in r.accepted.to_pylist()}
    assert rows["alpha.png"]["mode"] == "RGBA" and rows["palette.png"]["mode"] == "P"
    assert rows["cmyk.jpg"]["mode"] == "CMYK" and rows["cmyk.jpg"]["format"] == "JPEG"
    assert rows["sixteen.png"]["mode"].startswith("I")
    # a 0..65535 ramp has mean luminance ~127.5 once scaled; clipping to 8 bits would give ~254
    assert 110 < rows["sixteen.png"]["brightness"] < 145
    assert rows["good.jpg"]["width"] == 40 and rows["good.jpg"]["height"] == 32
    assert rows["ünïcode 画像.jpg"]["bytes"] == (zoo / "ünïcode 画像.jpg").stat().st_size


def test_limits_come_from_arguments(tmp_path):
    write(tmp_path / "b" / "big.png", png_bytes("RGB", size=(300, 20)))
    write(tmp_path / "b" / "heavy.jpg", jpeg_bytes(5, size=(64, 64)))
    lim = ImageLimits(min_side=8, max_side=200, max_pixels=10**6, max_bytes=1000)
    r = scan_batch(tmp_path / "b", "b", lim, workers=1)
    assert outcome(r) == {"big.png": "too_large", "heavy.jpg": "too_large"}


def test_probe_never_raises_on_random_bytes():
    rng = np.random.default_rng(0)
    header = jpeg_bytes(9)[:20]
    for i in range(200):
        blob = header + rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
        r = probe_image(blob, ImageLimits())
        assert getattr(r, "reason", "accepted") in set(REASONS) | {"accepted"}


def test_duplicates_across_batches_use_prior_ids(tmp_path):
    data = jpeg_bytes(11)
    write(tmp_path / "b2" / "again.jpg", data)
    write(tmp_path / "b2" / "new.jpg", jpeg_bytes(12))
    first = scan_batch(write(tmp_path / "b1" / "x.jpg", data).parent, "b1", ImageLimits(), workers=1)
    prior = {first.accepted.column("sample_id")[0].as_py(): "b1/x.jpg"}
    r = scan_batch(tmp_path / "b2", "b2", ImageLimits(), prior=prior, workers=1)
    assert outcome(r) == {"again.jpg": "duplicate", "new.jpg": "accepted"}
    assert r.quarantine.column("duplicate_of").to_pylist() == ["b1/x.jpg"]


def test_duplicates_across_batches_from_earlier_manifests_one_at_a_time(tmp_path):
    """PriorManifests reads earlier manifests one at a time (memory flat as batches accumulate) and names the
    earliest batch that accepted the same bytes."""
    from ssl_ops.ingest.prior import PriorManifests
    from ssl_ops.manifest import write_table_atomic

    a, b, c = jpeg_bytes(21), jpeg_bytes(22), jpeg_bytes(23)
    r1 = scan_batch(write(tmp_path / "l" / "b1" / "a.jpg", a).parent, "b1", ImageLimits(), workers=1)
    write(tmp_path / "l" / "b2" / "b.jpg", b)
    r2 = scan_batch(write(tmp_path / "l" / "b2" / "a again.jpg", a).parent, "b2", ImageLimits(), workers=1)
    write_table_atomic(r1.accepted, tmp_path / "m" / "b1.parquet")
    write_table_atomic(r2.accepted, tmp_path / "m" / "b2.parquet")  # b2 accepted a again (b1 was not prior)
    write(tmp_path / "l" / "b3" / "x.jpg", a)
    write(tmp_path / "l" / "b3" / "y.jpg", b)
    write(tmp_path / "l" / "b3" / "z.jpg", c)
    prior = PriorManifests({"b1": tmp_path / "m" / "b1.parquet", "b2": tmp_path / "m" / "b2.parquet",
                            "gone": tmp_path / "m" / "gone.parquet"})
    r = scan_batch(tmp_path / "l" / "b3", "b3", ImageLimits(), prior=prior, workers=1)
    assert outcome(r) == {"x.jpg": "duplicate", "y.jpg": "duplicate", "z.jpg": "accepted"}
    assert dict(zip(r.quarantine.column("path").to_pylist(), r.quarantine.column("duplicate_of").to_pylist())) == {
        "x.jpg": "b1/a.jpg", "y.jpg": "b2/b.jpg"}


def test_metadata_csv_with_missing_and_extra_rows(tmp_path):
    d = tmp_path / "b"
    write(d / "a.jpg", jpeg_bytes(1))
    write(d / "sub" / "b é.jpg", jpeg_bytes(2))
    write(d / "c.jpg", jpeg_bytes(3))
    (d / "metadata.csv").write_text("path,domain,site\na.jpg,photo,s1\n./sub/b é.jpg,sketch,\nghost.jpg,photo,s2\n")
    r = scan_batch(d, "b", ImageLimits(), workers=1)
    rows = {x["path"]: x for x in r.accepted.to_pylist()}
    assert r.seen == 3  # the sidecar itself is not a sample
    assert (rows["a.jpg"]["attr_domain"], rows["a.jpg"]["attr_site"]) == ("photo", "s1")
    assert (rows["sub/b é.jpg"]["attr_domain"], rows["sub/b é.jpg"]["attr_site"]) == ("sketch", None)
    assert rows["c.jpg"]["attr_domain"] is None
    assert r.files_without_metadata == ["c.jpg"] and r.metadata_without_file == ["ghost.jpg"]


def test_metadata_jsonl_and_nfd_names(tmp_path):
    d = tmp_path / "b"
    nfd = "cafe\u0301.jpg"  # as macOS writes it
    write(d / nfd, jpeg_bytes(1))
    (d / "metadata.jsonl").write_text('{"path": "caf\u00e9.jpg", "domain": "photo"}\n\n')
    r = scan_batch(d, "b", ImageLimits(), workers=1)
    assert r.accepted.column("attr_domain").to_pylist() == ["photo"]


@pytest.mark.parametrize("files,needle", [
    ({"metadata.csv": "file,domain\na.jpg,x\n"}, "no 'path' column"),
    ({"metadata.csv": "path,domain\na.jpg,x\na.jpg,y\n"}, "listed twice"),
    ({"metadata.csv": "path,domain\na.jpg,x\n", "metadata.jsonl": '{"path": "a.jpg"}\n'}, "keep one"),
    ({"metadata.jsonl": '{"path": "a.jpg"}\nnot json\n'}, ":2: not JSON"),
    ({"metadata.csv": "path,my domain\na.jpg,x\n"}, "identifiers"),
])
def test_malformed_metadata_is_a_clear_error(tmp_path, files, needle):
    d = tmp_path / "b"
    write(d / "a.jpg", jpeg_bytes(1))
    for name, text in files.items():
        (d / name).write_text(text)
    with pytest.raises(MetadataError, match=needle):
        scan_batch(d, "b", ImageLimits(), workers=1)


def test_empty_and_missing_batch_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    r = scan_batch(tmp_path / "empty", "empty", ImageLimits(), workers=1)
    assert (r.seen, r.accepted.num_rows, r.quarantine.num_rows) == (0, 0, 0)
    assert r.accepted.schema.field("phash").type.bit_width == 64
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_batch(tmp_path / "nope", "nope", ImageLimits())


def test_non_utf8_file_name_is_quarantined(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    with open(os.fsencode(str(d)) + b"/bad\xffname.jpg", "wb") as f:
        f.write(jpeg_bytes(1))
    r = scan_batch(d, "b", ImageLimits(), workers=1)
    assert r.seen == 1 and r.quarantine.column("reason").to_pylist() == ["unreadable"]
    assert "UTF-8" in r.quarantine.column("detail")[0].as_py()


def test_parallel_scan_equals_serial(zoo, monkeypatch):
    for i in range(40):
        write(zoo / "many" / f"{i:03d}.jpg", jpeg_bytes(100 + i))
    serial = scan_batch(zoo, "b1", ImageLimits(), workers=1)
    monkeypatch.setattr(scan_mod, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(scan_mod, "CHUNK", 7)
    seen = []
    parallel = scan_batch(zoo, "b1", ImageLimits(), workers=2, progress=lambda d, n: seen.append((d, n)))
    assert parallel.accepted.equals(serial.accepted) and parallel.quarantine.equals(serial.quarantine)
    assert seen[-1] == (serial.seen, serial.seen) and len(seen) > 1


def test_listing_is_sorted_skips_sidecars_and_does_not_follow_dir_links(tmp_path):
    d = tmp_path / "b"
    write(d / "z.jpg", b"x")
    write(d / "a" / "metadata.csv", b"nested sidecar names are ordinary files")
    (d / "metadata.csv").write_text("path\n")
    os.symlink(d, d / "loop")
    assert list_batch_files(d) == ["a/metadata.csv", "loop", "z.jpg"]  # the link is listed (and quarantined), not walked


def test_links_fifos_and_broken_links_are_accounted_for(tmp_path):
    d = tmp_path / "b"
    write(d / "real.jpg", jpeg_bytes(1))
    write(tmp_path / "elsewhere" / "x.jpg", jpeg_bytes(2))
    write(d / "sub" / "inner.jpg", jpeg_bytes(3))
    os.symlink(d / "sub", d / "linked folder")
    os.symlink(d / "sub" / "inner.jpg", d / "inner link.jpg")  # a link inside the batch is read through
    os.symlink(d / "gone.jpg", d / "broken.jpg")
    os.mkfifo(d / "pipe.jpg")
    r = scan_batch(d, "b", ImageLimits(), workers=1)
    # sorted path order: the link comes first and is kept, the file it names is then its duplicate
    assert outcome(r) == {"real.jpg": "accepted", "inner link.jpg": "accepted", "sub/inner.jpg": "duplicate",
                          "linked folder": "not_a_file", "broken.jpg": "unreadable", "pipe.jpg": "not_a_file"}
    assert r.seen == 6 == r.accepted.num_rows + r.quarantine.num_rows
    details = dict(zip(r.quarantine.column("path").to_pylist(), r.quarantine.column("detail").to_pylist()))
    assert "links to folders are not followed" in details["linked folder"] and "FIFO" in details["pipe.jpg"]
    assert details["broken.jpg"] == "broken symbolic link"


@pytest.mark.parametrize("workers", [1, 2])
def test_links_that_lead_outside_the_batch_are_quarantined_unread(tmp_path, monkeypatch, workers):
    """Landing policy for links: a link resolving outside the batch folder is quarantined as outside_batch and
    never opened (a link to /etc/passwd is not read or hashed); `follow` reads it."""
    d = tmp_path / "b"
    write(d / "real.jpg", jpeg_bytes(1))
    write(tmp_path / "elsewhere" / "x.jpg", jpeg_bytes(2))
    os.symlink(tmp_path / "elsewhere" / "x.jpg", d / "out.jpg")
    os.symlink("/etc/passwd", d / "passwd.jpg")
    os.symlink("../elsewhere", d / "out folder")
    os.symlink(tmp_path / "nowhere.jpg", d / "broken out.jpg")
    os.symlink("sub/../real.jpg", d / "z dotdot inside.jpg")
    (d / "sub").mkdir()
    opened = []
    real_open = open

    def spy(path, *a, **k):
        opened.append(os.path.realpath(path))
        return real_open(path, *a, **k)

    if workers == 1:  # in-process: prove the outside files are never opened
        monkeypatch.setattr("builtins.open", spy)
    r = scan_batch(d, "b", ImageLimits(), workers=workers)
    assert outcome(r) == {"real.jpg": "accepted", "out.jpg": "outside_batch", "passwd.jpg": "outside_batch",
                          "out folder": "outside_batch", "broken out.jpg": "outside_batch",
                          "z dotdot inside.jpg": "duplicate"}
    q = {row["path"]: row for row in r.quarantine.to_pylist()}
    assert q["passwd.jpg"]["sample_id"] is None and q["passwd.jpg"]["bytes"] is None  # never hashed
    assert "not read" in q["out.jpg"]["detail"] and "batch.links: follow" in q["out.jpg"]["detail"]
    if workers == 1:
        assert "/etc/passwd" not in opened and str(tmp_path / "elsewhere" / "x.jpg") not in opened
    followed = scan_batch(d, "b", ImageLimits(), workers=1, links="follow")
    assert outcome(followed)["out.jpg"] == "accepted" and outcome(followed)["passwd.jpg"] == "not_an_image"
    with pytest.raises(ValueError, match="links must be one of"):
        scan_batch(d, "b", ImageLimits(), workers=1, links="sometimes")


def test_a_sidecar_linked_from_outside_the_batch_is_refused(tmp_path):
    d = tmp_path / "b"
    write(d / "a.jpg", jpeg_bytes(1))
    (tmp_path / "secret.csv").write_text("path,site\na.jpg,x\n")
    os.symlink(tmp_path / "secret.csv", d / "metadata.csv")
    with pytest.raises(MetadataError, match="metadata.csv: a symbolic link that leads outside the batch folder"):
        scan_batch(d, "b", ImageLimits(), workers=1)
    r = scan_batch(d, "b", ImageLimits(), workers=1, links="follow")
    assert r.accepted.column("attr_site").to_pylist() == ["x"]


def test_a_broken_csv_says_which_file_and_line_and_what_to_fix(tmp_path):
    d = tmp_path / "b"
    write(d / "a.jpg", jpeg_bytes(1))
    write(d / "b.jpg", jpeg_bytes(2))
    (d / "metadata.csv").write_text("path,note\na.jpg,fine\nb.jpg,\"" + "x" * 200_000 + "\n")
    with pytest.raises(MetadataError, match=r"metadata.csv:\d+: not a readable CSV row .*unbalanced double quote"):
        scan_batch(d, "b", ImageLimits(), workers=1)
    (d / "metadata.csv").write_text("path,note\na.jpg,fine\nb.jpg,\"" + "x" * 200_000 + "\"\n")
    with pytest.raises(MetadataError, match=r"metadata.csv:3: .*longer than 131072 characters"):
        scan_batch(d, "b", ImageLimits(), workers=1)


def test_formats_and_modes_outside_the_contract_are_quarantined_per_file(tmp_path):
    d = tmp_path / "b"
    write(d / "ok.jpg", jpeg_bytes(1))
    Image.new("RGB", (20, 20)).save(d / "pic.ppm")
    Image.fromarray(np.zeros((20, 20), np.float32)).save(d / "float.tiff")
    lim = ImageLimits(formats=("JPEG", "PNG", "TIFF"), modes=("RGB", "L"))
    r = scan_batch(d, "b", lim, workers=1)
    assert outcome(r) == {"ok.jpg": "accepted", "pic.ppm": "unsupported_format", "float.tiff": "unsupported_format"}
    details = dict(zip(r.quarantine.column("path").to_pylist(), r.quarantine.column("detail").to_pylist()))
    assert details["pic.ppm"].startswith("format PPM is not one of") and details["float.tiff"].startswith("mode F")


def test_phash_is_stable_under_reencoding(tmp_path):
    rng = np.random.default_rng(3)
    im = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((96, 96), Image.Resampling.BICUBIC)
    im.save(tmp_path / "a.png")
    im.resize((64, 64)).save(tmp_path / "b.jpg", quality=70)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((96, 96)).save(tmp_path / "c.png")
    r = scan_batch(tmp_path, "b", ImageLimits(), workers=1)
    h = dict(zip(r.accepted.column("path").to_pylist(), r.accepted.column("phash").to_pylist()))
    assert bin(h["a.png"] ^ h["b.jpg"]).count("1") <= 4
    assert bin(h["a.png"] ^ h["c.png"]).count("1") > 12


def test_sidecar_edge_cases_from_spreadsheets_and_json(tmp_path):
    d = tmp_path / "b"
    write(d / "a.jpg", jpeg_bytes(1))
    write(d / "b.jpg", jpeg_bytes(2))
    (d / "metadata.csv").write_bytes("\ufeffpath , domain\n a.jpg ,photo\n,\n\nb.jpg,\"sketch, ink\"\n,,\n".encode())
    r = scan_batch(d, "b", ImageLimits(), workers=1)
    assert r.accepted.column("attr_domain").to_pylist() == ["photo", "sketch, ink"] and not r.metadata_without_file
    (d / "metadata.csv").unlink()
    (d / "metadata.jsonl").write_text('{"path": "a.jpg", "ok": true, "n": 3}\n{"path": "b.jpg", "ok": false}\n')
    r = scan_batch(d, "b", ImageLimits(), workers=1)
    assert r.accepted.column("attr_ok").to_pylist() == ["true", "false"]
    assert r.accepted.column("attr_n").to_pylist() == ["3", None]


def test_a_sidecar_in_another_encoding_is_a_clear_error(tmp_path):
    d = tmp_path / "b"
    write(d / "a.jpg", jpeg_bytes(1))
    (d / "metadata.csv").write_bytes("path,site\na.jpg,Zürich\n".encode("cp1252"))
    with pytest.raises(MetadataError, match=r"metadata.csv: not UTF-8 .*save it as UTF-8"):
        scan_batch(d, "b", ImageLimits(), workers=1)


def test_an_unbalanced_quote_in_metadata_csv_is_an_error_not_lost_attributes(tmp_path):
    d = tmp_path / "b"
    write(d / "img0.png", png_bytes("RGB"))
    write(d / "img1.png", png_bytes("RGB", value=(1, 2, 3)))
    (d / "metadata.csv").write_text('path,site\n"img0.png,a\nimg1.png,b\n')  # the quote swallowed every row
    with pytest.raises(MetadataError, match=r"metadata.csv:\d+: not a readable CSV row .*unbalanced quote"):
        scan_batch(d, "b", ImageLimits(), workers=1)


def test_sidecar_paths_are_resolved_and_rows_outside_the_batch_are_reported(tmp_path):
    d = tmp_path / "b"
    write(d / "img3.png", png_bytes("RGB"))
    write(d / "sub" / "img4.png", png_bytes("RGB", value=(9, 9, 9)))
    (d / "metadata.csv").write_text("path,site\nsub/../img3.png,a\n.//sub/./img4.png,b\n../x/img0.png,c\n/etc/passwd,d\n")
    r = scan_batch(d, "b", ImageLimits(), workers=1)
    assert dict(zip(r.accepted.column("path").to_pylist(), r.accepted.column("attr_site").to_pylist())) == {
        "img3.png": "a", "sub/img4.png": "b"}
    assert r.metadata_without_file == ["../x/img0.png", "/etc/passwd"]
