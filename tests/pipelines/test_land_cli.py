"""`sslpipe land`: a folder becomes a complete landing batch (or the eval set), its _READY last."""

from pathlib import Path

from pipelines.cli import main


def make(folder: Path, n: int = 3) -> Path:
    for i in range(n):
        (folder / "sub").mkdir(parents=True, exist_ok=True)
        (folder / "sub" / f"{i}.jpg").write_bytes(b"x" * (i + 1))
    (folder / ".DS_Store").write_bytes(b"junk")
    return folder


def test_land_a_batch_and_the_eval_set_locally(tmp_path, capsys):
    home = tmp_path / "home"
    src = make(tmp_path / "src")
    assert main(["land", str(src), "--batch", "2026-11-30", "--home", str(home)]) == 0
    dst = home / "landing" / "2026-11-30"
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file()) == [
        "_READY", "sub/0.jpg", "sub/1.jpg", "sub/2.jpg"]  # hidden files stay behind
    assert "landed 3 file(s)" in capsys.readouterr().out
    assert not list((home / "landing").glob(".*"))  # no half-copied hidden folder left
    # a batch is ingested once: landing the same name again is refused, and nothing changes
    (src / "sub" / "3.jpg").write_bytes(b"new")
    assert main(["land", str(src), "--batch", "2026-11-30", "--home", str(home)]) == 2
    assert "already exists: land new images as a new batch" in capsys.readouterr().err
    assert not (dst / "sub" / "3.jpg").exists()
    assert main(["land", str(src), "--eval", "--home", str(home)]) == 0
    assert (home / "eval" / "sub" / "3.jpg").read_bytes() == b"new"
    assert main(["land", str(src), "--eval", "--home", str(home)]) == 2  # the eval set is not silently replaced
    assert "already holds an eval set" in capsys.readouterr().err


def test_bad_arguments_exit_2_with_what_to_fix(tmp_path, capsys):
    home = tmp_path / "home"
    src = make(tmp_path / "src")
    for args, msg in ((["--batch", "a,b"], "a Dagster partition key cannot hold"),
                      (["--batch", "eval"], "reserved for the eval set"),
                      (["--batch", ".hidden"], "hidden folder")):
        assert main(["land", str(src), *args, "--home", str(home)]) == 2
        assert msg in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["land", str(empty), "--batch", "b1", "--home", str(home)]) == 2
    assert "holds no files" in capsys.readouterr().err
    assert main(["land", str(tmp_path / "nowhere"), "--batch", "b1", "--home", str(home)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert not (home / "landing").exists() or not any((home / "landing").iterdir())
