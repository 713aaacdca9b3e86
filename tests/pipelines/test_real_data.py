"""The data graph on the real shared datasets: PACS (a real group imbalance) and CIFAR-10 (real leakage).

Skips with a message when ../shared/datasets is absent; CI always has it. The full CIFAR-10 run is
marked slow (about a minute); .ci/run runs it.
"""

import csv
import io
import json
import shutil
import zipfile

import pytest

from assets.records import read_record
from imagefiles import extract, jpeg_bytes, need_shared, write
from pipelines.cli import main
from ssl_ops.manifest import read_manifest
from ssl_ops.shards import load_index

PACS_DOMAINS = {"art_painting": 2048, "cartoon": 2344, "photo": 1670, "sketch": 3929}


@pytest.fixture(scope="module")
def pacs_landing(tmp_path_factory):
    z = need_shared("pacs-64", "pacs-64px.zip")
    root = tmp_path_factory.mktemp("pacs")
    batch = root / "landing" / "pacs"
    extract(z, batch, prefix="", limit=None)
    labels = list(csv.DictReader(io.StringIO((batch / "labels.csv").read_text())))
    (batch / "labels.csv").unlink()
    with open(batch / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "domain"])
        for r in labels:
            w.writerow([r["path"], r["domain"]])
    return root, {d: sum(r["domain"] == d for r in labels) for d in PACS_DOMAINS}


def pacs_config(tmp_path, severity):
    from data_contracts.contract import CONTRACTS_DIR

    text = (CONTRACTS_DIR / "unlabeled_images.yaml").read_text()
    text = text.replace("  groups: {}", "  groups:\n    domain: {min_share: 0.2, values: [art_painting, cartoon, photo, sketch]}")
    text = text.replace("  group_representation: warn", f"  group_representation: {severity}")
    (tmp_path / "pacs_contract.yaml").write_text(text)
    (tmp_path / "config.yaml").write_text("contract: pacs_contract.yaml\n")
    return tmp_path / "config.yaml"


def small_eval_set(home):
    """image_shards needs the eval set materialized first (it leaves eval copies out of the shards): a small one
    of synthetic images, none of them near a PACS image."""
    for c in ("cat", "dog"):
        for i in range(6):
            write(home / "eval" / c / f"{i}.jpg", jpeg_bytes(500 + 10 * (c == "dog") + i, size=(36, 36)))


PACS_INGEST = "eval_images,raw_images,validated_images,bias_report,image_shards"


def test_pacs_domain_imbalance_is_flagged(pacs_landing, tmp_path, capsys):
    root, counts = pacs_landing
    assert counts == PACS_DOMAINS
    home = tmp_path / "home"
    small_eval_set(home)
    code = main(["run", "--home", str(home), "--landing", str(root / "landing"), "--config", str(pacs_config(tmp_path, "warn")),
                 "--select", PACS_INGEST])
    out = capsys.readouterr().out
    assert code == 0
    accepted = read_manifest(home / "manifests" / "pacs" / "accepted.parquet")
    quarantine = read_manifest(home / "manifests" / "pacs" / "quarantine.parquet")
    assert accepted.num_rows + quarantine.num_rows == 9991
    assert quarantine.num_rows == 0  # every PACS file is a good, distinct image
    report = json.loads((home / "reports" / "pacs" / "bias.json").read_text())
    group = report["groups"][0]
    assert group["attribute"] == "domain" and group["under"] == ["photo"]
    assert 0.16 < group["shares"]["photo"] < 0.175 and min(v for k, v in group["shares"].items() if k != "photo") > 0.2
    assert report["flags"]["group_representation"] is True
    assert "warning check bias_report:group_representation failed: domain=photo 16." in out
    idx = load_index(home / "shards" / "pacs" / "index.json")
    assert idx.samples == accepted.num_rows and idx.excluded == []  # a warning does not block; no eval copies
    assert read_record(home, "eval_images").images == 12


def test_pacs_imbalance_blocks_when_the_contract_says_so(pacs_landing, tmp_path, capsys):
    root, _ = pacs_landing
    home = tmp_path / "home"
    small_eval_set(home)
    code = main(["run", "--home", str(home), "--landing", str(root / "landing"), "--config", str(pacs_config(tmp_path, "block")),
                 "--select", PACS_INGEST])
    assert code == 1
    assert "BLOCKED: bias_report:group_representation (pacs): domain=photo 16." in capsys.readouterr().err
    assert not (home / "shards" / "pacs").exists()


def stage_cifar(home, every: int, batches: int):
    train = need_shared("cifar10-jpg", "train.zip")
    test = need_shared("cifar10-jpg", "test.zip")
    with zipfile.ZipFile(train) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))[::every]
        for i, n in enumerate(names):
            target = home / "landing" / f"train-{i * batches // len(names) + 1}" / n
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(n))
    extract(test, home / "eval", prefix="test/", every=every, strip=1)
    return len(names)


def test_cifar10_subset_through_the_graph(tmp_path, capsys):
    home = tmp_path / "home"
    n = stage_cifar(home, every=10, batches=2)
    assert main(["run", "--home", str(home)]) == 0
    ev = read_manifest(home / "manifests" / "eval" / "accepted.parquet")
    assert ev.num_rows == 1000 and len(set(ev.column("attr_label").to_pylist())) == 10
    idx = [load_index(home / "shards" / f"train-{b}" / "index.json") for b in (1, 2)]
    excluded = [e for i in idx for e in i.excluded]
    # CIFAR-10's test set holds near copies of training images (Barz & Denzler, "Do we train on test data?",
    # 2020): with the eval set known first, those training images are left out of the shards, each listed.
    assert sum(i.samples for i in idx) + len(excluded) == n == 5000
    assert 0 < len(excluded) <= 60 and all(e["reason"].startswith("eval_copy_") for e in excluded)
    assert json.loads((home / "reports" / "eval" / "leakage.json").read_text())["near"] == []


@pytest.mark.slow
def test_cifar10_full_train_set_finds_real_test_train_near_duplicates(tmp_path, capsys):
    home = tmp_path / "home"
    assert stage_cifar(home, every=1, batches=5) == 50000
    # the train batches are sharded against a first, small eval set (image_shards needs one); then the eval set
    # becomes CIFAR-10's test set: the leakage decision, on the shards as they are, finds the copies
    (home / "eval").rename(home / "cifar-test")
    small_eval_set(home)
    assert main(["run", "--home", str(home), "--select", PACS_INGEST]) == 0
    assert sum(load_index(home / "shards" / f"train-{b}" / "index.json").samples for b in range(1, 6)) == 50000
    shutil.rmtree(home / "eval")
    (home / "cifar-test").rename(home / "eval")
    capsys.readouterr()
    assert main(["run", "--home", str(home), "--select", "eval_images,eval_leakage"]) == 1
    assert "BLOCKED: eval_leakage:leakage (global)" in capsys.readouterr().err
    assert read_record(home, "ssl_encoder") is None
    leaks = json.loads((home / "reports" / "eval" / "leakage.json").read_text())
    assert leaks["passed"] is False and sorted(leaks["batches_checked"]) == [f"train-{b}" for b in range(1, 6)]
    pairs = {(m["eval"], m["train"].split("/", 1)[1]) for m in leaks["near"] + leaks["exact"]}  # minus the batch
    # a pair checked by eye: the same yellow car, 2 pHash bits apart
    assert ("automobile/0337.jpg", "train/automobile/4929.jpg") in pairs
    assert 50 <= len(pairs) <= 300
    # a whole run re-shards the batches against the new eval set (image_shards takes it as input), leaving those
    # training images out, so the decision passes and training goes ahead on the shards it covered
    capsys.readouterr()
    assert main(["run", "--home", str(home)]) == 0
    idx = {f"train-{b}": load_index(home / "shards" / f"train-{b}" / "index.json") for b in range(1, 6)}
    excluded = [e for i in idx.values() for e in i.excluded]
    assert len(excluded) >= len(pairs)  # every training image near an eval image, some eval images have several
    after = json.loads((home / "reports" / "eval" / "leakage.json").read_text())
    assert after["passed"] is True and after["exact"] == after["near"] == []
    assert after["batches_checked"] == {b: i.digest for b, i in idx.items()}
    assert read_record(home, "ssl_encoder").shard_index_digests == after["batches_checked"]
