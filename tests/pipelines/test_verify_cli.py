"""`sslpipe verify` on a real small home: exit codes, one line per damaged item with the command that
rebuilds it, escaping of names from the data, and the printed commands run as printed."""

import json
import os
import shlex
import subprocess
import tarfile
from pathlib import Path

import pytest

from imagefiles import jpeg_bytes, write
from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "shards:\n  max_samples: 10\n"


@pytest.fixture
def home(tmp_path, capsys):
    """Three batches (24, 24, 12 real JPEGs) ingested and sharded in shards of 10."""
    home = tmp_path / "home"
    for b, n, base in (("b1", 24, 0), ("b2", 24, 100), ("b3", 12, 200)):
        for i in range(n):
            write(home / "landing" / b / f"img{i:02d}.jpg", jpeg_bytes(base + i, size=(40, 32)))
        (home / "landing" / b / "_READY").touch()  # complete, for the commands run as subprocesses too
    eval_set(home)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG)
    assert main(["run", "--home", str(home), "--config", str(cfg), "--select",
                 "eval_images,raw_images,validated_images,bias_report,image_shards,eval_leakage"]) == 0
    capsys.readouterr()
    return home, cfg


def eval_set(home: Path) -> None:
    """A small labeled eval set (image_shards leaves its copies out, so it is ingested first)."""
    for c, base in (("zero", 900), ("one", 950)):
        for i in range(6):  # the eval contract asks for at least 10 images
            write(home / "eval" / c / f"{i}.jpg", jpeg_bytes(base + i, size=(40, 32)))


def verify(capsys, *args):
    rc = main(["verify", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_verify_finds_each_damage_says_how_to_rebuild_and_the_commands_work_as_printed(home, capsys):
    home, cfg = home
    h = str(home.resolve())
    rc, out, _ = verify(capsys, "--home", h, "--config", str(cfg))
    assert rc == 0 and out.strip().endswith("all intact") and "4 batch(es), 8 shard(s), 60 sample(s)" in out  # b1-b3 and the eval set

    s1 = home / "shards" / "b1" / "shard-000000.tar"  # a flipped byte in a tar header
    with tarfile.open(s1) as t:
        off = t.getmembers()[6].offset
    data = bytearray(s1.read_bytes())
    data[off + 3] ^= 0xFF
    s1.write_bytes(bytes(data))
    s2 = home / "shards" / "b2" / "shard-000001.tar"  # a truncated shard
    s2.write_bytes(s2.read_bytes()[:3000])
    (home / "manifests" / "b2" / "quarantine.parquet").write_bytes(b"PAR1 not really")  # a damaged manifest
    i3 = home / "shards" / "b3" / "index.json"  # a hand-edited index
    d = json.loads(i3.read_text())
    d["shards"][0]["samples"], d["samples"] = 9, 11
    i3.write_text(json.dumps(d))

    rc, out, _ = verify(capsys, "--home", h, "--config", str(cfg))
    assert rc == 1 and out.strip().endswith("damaged item(s)")
    lines = out.splitlines()
    assert f"DAMAGED [b1] {s1}: sha256" in out and "unreadable tar header at byte" in out
    assert f"DAMAGED [b2] {s2}: 3000 bytes, the index says" in out
    assert f"DAMAGED [b2] {home.resolve() / 'manifests' / 'b2' / 'quarantine.parquet'}: unreadable" in out
    assert f"DAMAGED [b3] {home.resolve() / 'shards' / 'b3' / 'index.json'}: its digest does not match" in out
    rebuilds = sorted({ln.split("rebuild: ", 1)[1] for ln in lines if "rebuild: " in ln})
    c = shlex.quote(str(cfg))
    assert rebuilds == sorted([
        f"sslpipe run --home {h} --config {c} --select image_shards --batches b1",
        f"sslpipe run --home {h} --config {c} --select raw_images,validated_images,bias_report,image_shards --batches b2",
        f"sslpipe run --home {h} --config {c} --select image_shards --batches b2",
        f"sslpipe run --home {h} --config {c} --select image_shards --batches b3"])

    rc, quick, _ = verify(capsys, "--home", h, "--config", str(cfg), "--quick")
    assert rc == 1 and "unreadable tar header" not in quick and f"{s1}: sha256" in quick  # no member reads
    rc, only3, _ = verify(capsys, "--home", h, "--batches", "b3")
    assert rc == 1 and "[b3]" in only3 and "[b1]" not in only3 and "1 batch(es)" in only3

    # the commands, exactly as printed: the console script in a shell for one, the same main() for the rest
    first, *rest = [r for r in rebuilds if "--batches b2" not in r or "raw_images" in r]
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    r = subprocess.run(first, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for cmd in rest:
        assert main(shlex.split(cmd)[1:]) == 0, cmd
    capsys.readouterr()
    rc, out, _ = verify(capsys, "--home", h, "--config", str(cfg))
    assert rc == 0 and out.strip().endswith("all intact"), out


def test_bad_arguments_exit_2_and_names_from_the_data_are_escaped(home, capsys, tmp_path):
    home, cfg = home
    rc, _, err = verify(capsys, "--home", str(home), "--batches", "nope")
    assert rc == 2 and "unknown batch(es) nope" in err
    rc, _, err = verify(capsys, "--home", str(tmp_path / "absent"))
    assert rc == 2 and "no home at" in err
    with pytest.raises(SystemExit) as e:
        main(["verify", "--home", str(home), "--bogus"])
    assert e.value.code == 2
    evil = home / "shards" / "x\x1b[2Jy"  # a folder whose name clears the screen when printed raw
    evil.mkdir()
    (evil / "index.json").write_text("{not json")
    rc, out, _ = verify(capsys, "--home", str(home))
    assert rc == 1 and "\x1b" not in out and "x\\x1b[2Jy" in out


def test_a_deleted_shard_folder_or_a_bad_excluded_list_is_damage_and_training_refuses(home, capsys):
    """A batch that passed its checks but whose shard folder is gone is reported (it was 'all intact'), and
    ssl_encoder refuses to train without it (it trained on the other batches and registered a version); an
    `excluded` list edited out of shape is damage, not a KeyError."""
    import shutil

    from pipelines.runner import run_pipeline
    from pipelines.settings import Settings

    home, cfg = home
    h = str(home.resolve())
    shutil.rmtree(home / "shards" / "b1")
    i3 = home / "shards" / "b3" / "index.json"
    d = json.loads(i3.read_text())
    d["excluded"] = [{"sha256": "x"}]
    i3.write_text(json.dumps(d))
    rc, out, _ = verify(capsys, "--home", h, "--config", str(cfg))
    assert rc == 1
    assert f"DAMAGED [b1] {h}/shards/b1/index.json: missing: the batch passed its checks" in out
    assert "rebuild: sslpipe run --home" in out and "--select image_shards --batches b1" in out
    assert f"DAMAGED [b3] {h}/shards/b3/index.json: its `excluded` list is not" in out
    (tmp := home.parent / "train.yaml").write_text(
        CONFIG + "train: {steps: 2, width: 8, image_size: 16, batch_size: 8, workers: 0, checkpoint_every: 0, "
                 "health_every: 0}\n")
    s = Settings.from_env(home=home).with_config_file(tmp)
    outs = run_pipeline(s, select=["ssl_encoder"], echo=lambda m: None)
    assert not outs[-1].success and "batch 'b1' passed its checks but has no shard index" in outs[-1].errors[0]
    assert not (home / "models").exists() or not any((home / "models").rglob("encoder.pt"))
