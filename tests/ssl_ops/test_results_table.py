"""The results table and the gate's line that end `sslpipe run` / `demo` (ssl_ops.review.results), on real probe
tables (ssl_ops.probes.probe_features on Gaussian blobs, tests/review_data.py) with hostile class names and
group columns and values."""

import copy
import re

import pytest

from review_data import ANSI, HOSTILE_GROUP_VALUES, SCRIPT, probe_report, table
from ssl_ops.escape import terminal
from ssl_ops.review.results import GateOutcome, fraction_figure, gate_lines, results_table

HOSTILE_CLASSES = [SCRIPT, ANSI, "cr\rover", "bidi\u202eevil"]


@pytest.fixture(scope="module")
def tables() -> dict:
    return {"model": table(1.5), "raw": table(8.0, seed=2), "rnd": table(6.0, seed=3), "champ": table(4.0, seed=1)}


def make_report(t: dict, champion: bool = False) -> dict:
    t = copy.deepcopy(t)
    r = probe_report(t["model"], t["raw"], t["rnd"], champion=t["champ"] if champion else None,
                     champion_version="7" if champion else None)
    r["classes"] = list(HOSTILE_CLASSES)
    return r


def no_controls(lines: list[str]) -> None:
    for line in lines:
        assert not re.search(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", line), repr(line)


def test_the_table_shows_each_encoder_with_knn_linear_interval_and_ten_percent_labels(tables):
    r = make_report(tables, champion=True)
    lines = results_table(r, "new model: version 8 of ssl-encoder", "champion (version 7)")
    text = "\n".join(lines)
    no_controls(lines)
    rows = {name: next(ln for ln in lines if ln.strip().startswith(name))
            for name in ("new model: version 8", "raw pixels", "random init", "champion (version 7)")}
    for key, name in (("model", "new model: version 8"), ("raw_pixels", "raw pixels"), ("random_init", "random init"),
                      ("champion", "champion (version 7)")):
        t = r[key]
        few, _ = fraction_figure(t)
        lo, hi = t["linear_ci"]
        want = [f"{100 * t['knn20']:.1f}%", f"{100 * t['linear']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]",
                f"{100 * few:.1f}%"]
        row = rows[name]
        assert all(w in row for w in want), (row, want)
        assert row.index(want[0]) < row.index(want[1]) < row.rindex(want[2])  # the columns' order
    assert f"{r['split']['n_test']} images, 4 classes" in text
    assert terminal(SCRIPT) in text and "\\x1b[31mred" in text and "cr\\rover" in text and "bidi\\u202eevil" in text
    # the group column and its worst value, from the data, escaped
    col = "domain" + ANSI
    worst = r["model"]["groups"][col]["worst_group"]
    assert worst in HOSTILE_GROUP_VALUES
    assert f"worst group of {terminal(col)}: {terminal(worst)}" in text
    # the columns line up: the kNN figures end, and the intervals start, at the same offsets in each row
    assert len({ln.index("%") for ln in rows.values()}) == 1, rows
    assert len({ln.index("[") for ln in rows.values()}) == 1, rows


def test_without_a_champion_there_is_no_champion_row_and_a_missing_fraction_is_a_dash(tables):
    r = make_report(tables)
    del r["raw_pixels"]["label_fractions"]["0.1"]
    lines = results_table(r, "version 1")
    assert not any("champion" in ln for ln in lines)
    raw = next(ln for ln in lines if ln.strip().startswith("raw pixels"))
    assert raw.rstrip().endswith("-")


def test_a_model_that_failed_the_gate_is_a_warning_with_the_failed_checks():
    g = GateOutcome(model="ssl-encoder", version="3", passed=False, review="gate_failed", champion_version="2",
                    summary=f"failed: groups: lost more than 0.05: domain={SCRIPT}\x1b[2J 0.500 vs 0.900; "
                            "baselines: linear 0.5 vs raw pixels 0.9")
    lines = gate_lines(g)
    no_controls(lines)
    assert len(lines) == 1 and lines[0].startswith("WARNING: version 3 of ssl-encoder did NOT pass the gate")
    assert f"groups: lost more than 0.05: domain={SCRIPT}\\x1b[2J 0.500 vs 0.900" in lines[0]
    assert "baselines: linear 0.5 vs raw pixels 0.9" in lines[0] and lines[0].endswith("the champion is still version 2")
    assert not g.promoted
    first = gate_lines(GateOutcome("m", "1", False, "failed: baselines: x", "gate_failed", None))
    assert first[0].endswith("there is no champion yet")


def test_passed_champion_candidate_and_reused_lines():
    champ = gate_lines(GateOutcome("ssl-encoder", "2", True, "passed leakage, collapse, baselines", "approved", "2",
                                   approval="auto"))
    assert champ == ["GATE: passed; version 2 of ssl-encoder is the champion (registry.approval: auto)"]
    cand = gate_lines(GateOutcome("ssl-encoder", "4", True, "passed ...", "pending", "2"))
    assert cand == ["GATE: passed; version 4 of ssl-encoder is the candidate; the champion moves when a person "
                    "approves it"]
    reused = gate_lines(GateOutcome("ssl-encoder", "3", False, "failed: primary_metric: x", "gate_failed", "2",
                                    reused=True))
    assert reused[0].startswith("training reused: nothing new was registered; these are the figures of version 3")
    assert reused[1].startswith("WARNING: ")
    hostile = gate_lines(GateOutcome(f"enc{ANSI}", "5", True, "passed", "pending", None))
    no_controls(hostile)
