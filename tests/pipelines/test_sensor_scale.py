"""The sensors' work grows linearly with the number of batch partitions (bench/scale_partitions.py measures it).

retrain_sensor's training_window looks at every registered batch on every tick; it must not search the list of
registered batches once per batch (O(N^2): at 10,000 batches that was 0.5 s of list searches per tick)."""

from __future__ import annotations

import json

from pipelines.sensors import training_window
from ssl_ops.home import Home


class SearchCountingList(list):
    """A list that counts the linear searches made in it (`x in list`)."""

    searches = 0

    def __contains__(self, item):
        type(self).searches += 1
        return super().__contains__(item)


def _sharded(h: Home, batch: str, samples: int) -> None:
    p = h.shard_index_path(batch)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"digest": f"d-{batch}", "samples": samples}))


def test_training_window_does_not_search_the_registered_batches_once_per_batch(tmp_path):
    h = Home.resolve(str(tmp_path / "home"), None, None)
    names = [f"b{i:04d}" for i in range(200)]
    for b in names:
        _sharded(h, b, 2)
    known = SearchCountingList(names)
    SearchCountingList.searches = 0
    window = training_window(h, known, {})
    assert list(window) == names and window["b0007"] == {"digest": "d-b0007", "samples": 2}
    assert SearchCountingList.searches == 0, (
        f"{SearchCountingList.searches} linear searches of the {len(names)} registered batches in one tick: "
        f"O(N^2) in the number of batches")


def test_training_window_keeps_its_choice_of_batches(tmp_path):
    h = Home.resolve(str(tmp_path / "home"), None, None)
    for b, n in (("a", 3), ("b", 0), ("c", 5), ("d", 7)):
        _sharded(h, b, n)
    known = ["a", "b", "c", "d"]
    assert list(training_window(h, known, {})) == ["a", "c", "d"]  # no samples: not in the window
    # train.batches: in its order; a batch not registered (or not sharded) is left out
    assert list(training_window(h, known, {"batches": ["d", "zz", "a"]})) == ["d", "a"]
    assert list(training_window(h, known, {"last_batches": 2})) == ["c", "d"]


def test_batches_already_taken_are_not_looked_at_again(tmp_path):
    """A tick does not re-read the files of batches registered and ingested: they count as complete (they were),
    whatever their files look like now; new ones are judged as before. Local folders and a storage prefix."""
    import uuid

    from assets.resources import PipelineHome
    from pipelines.sensors import complete_batches

    land = tmp_path / "h" / "landing"
    for b in ("old", "new"):
        (land / b).mkdir(parents=True)
        (land / b / "x.jpg").write_bytes(b"1")  # just written, no _READY: still landing by the quiet period
    home = PipelineHome(root=str(tmp_path / "h"))
    assert complete_batches(home, 3600) == ([], {"new": complete_batches(home, 3600)[1]["new"],
                                                 "old": complete_batches(home, 3600)[1]["old"]})
    found, skipped = complete_batches(home, 3600, taken={"old"})
    assert found == ["old"] and list(skipped) == ["new"]
    remote = PipelineHome(root=str(tmp_path / "r"), remote=f"memory://t-{uuid.uuid4().hex[:8]}/p")
    store = remote.store()
    for b in ("old", "new"):
        store.write_bytes(f"landing/{b}/x.jpg", b"1")
    found, skipped = complete_batches(remote, 3600, taken={"old"})
    assert found == ["old"] and list(skipped) == ["new"] and "still landing" in skipped["new"]
    store.write_bytes("landing/new/_READY", b"")
    assert complete_batches(remote, 3600, taken={"old"}) == (["new", "old"], {})
