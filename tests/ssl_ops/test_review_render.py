"""ssl_ops.review.compare and .render: the comparison dict `sslpipe review` prints, and its text and HTML
renderings, on real probe tables (tests/review_data.py) and real bias reports; no MLflow, no Dagster. Every string
the data or the registry gives is hostile somewhere here: it must come out escaped (terminal / html_text), never
raw."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from review_data import ANSI, HOSTILE_BATCH, IMG, SCRIPT, bias_json, probe_report, table
from ssl_ops.escape import html_text, terminal, visible
from ssl_ops.probes.stats import paired_bootstrap_ci
from ssl_ops.review.gate import GateConfig, verdict
from ssl_ops.review.compare import bias_summary, build_comparison
from ssl_ops.review.render import figure_png, render_html, render_text


@pytest.fixture(scope="module")
def t():
    return {"good": table(1.5), "champ": table(4.0, seed=1), "base": table(8.0, seed=2)}


def facts(version, report, role, batches=("b1",), gate=None, review=None):
    return {"version": version, "role": role, "aliases": [role], "gate": gate, "review": review,
            "batches": list(batches), "method": "simclr", "backbone": "resnet18", "run_id": "r" + version,
            "run_key": "k", "git_sha": "g", "created": 0, "report": report}


def comparison(t, hostile="x", champion_version="1", gate_config=None):
    gate = {"passed": True, "summary": "passed", "metric": "linear", "against": "champion",
            **({"config": gate_config} if gate_config else {}),
            "checks": [{"name": "primary_metric", "passed": True, "detail": f"detail {hostile}"},
                       {"name": "groups", "passed": False, "detail": f"{hostile} lost"}]}
    review = {"status": "pending", "reviewer": hostile, "time": "t", "reason": f"why {hostile}"}
    sub = facts("3", probe_report(t["good"], t["base"], t["base"], champion=t["champ"],
                                  champion_version=champion_version), "candidate", ("b1", HOSTILE_BATCH), gate, review)
    champ = facts("1", probe_report(t["champ"], t["base"], t["base"]), "champion")
    history = [{"time": "t", "alias": "champion", "from_version": None, "to_version": "1", "action": "approve",
                "reviewer": hostile, "reason": f"r {hostile}"}]
    return build_comparison(f"m{hostile}", sub, champ, {HOSTILE_BATCH: bias_json(HOSTILE_BATCH), "gone": None},
                            history, {"approve": "sslpipe approve m@3 --reason ok"}, notes=[f"note {hostile}"],
                            home=f"/h/{hostile}")


def test_the_comparison_holds_the_real_figures_and_the_paired_difference(t):
    cmp = comparison(t)
    json.dumps(cmp)  # serialisable as it is: what --json prints
    assert [p["key"] for p in cmp["probes"]] == ["subject", "champion", "raw_pixels", "random_init"]
    sub, champ = cmp["probes"][0], cmp["probes"][1]
    assert sub["linear"] == t["good"]["linear"] and sub["linear_ci"] == list(t["good"]["linear_ci"])
    assert champ["knn20"] == t["champ"]["knn20"] and "same split" in champ["label"] and cmp["same_split"]
    for m in ("knn20", "knn200", "linear"):
        lo, hi = paired_bootstrap_ci(t["good"]["correct"][m], t["champ"]["correct"][m])
        assert cmp["deltas"][m] == {"delta": pytest.approx(t["good"][m] - t["champ"][m]), "ci": [lo, hi],
                                    "verdict": verdict((lo, hi), GateConfig())}
    (g,) = cmp["groups"]
    mine, theirs = t["good"]["groups"][g["column"]], t["champ"]["groups"][g["column"]]
    assert g["worst_group_gap"] == mine["worst_group_gap"] and g["champion_worst_group"] == theirs["worst_group"]
    assert {v["value"]: (v["accuracy"], v["champion_accuracy"]) for v in g["values"]} == {
        k: (a["accuracy"], theirs["per_group"][k]["accuracy"]) for k, a in mine["per_group"].items()}
    assert cmp["new_batches"] == [HOSTILE_BATCH, "gone"] and cmp["bias"][1] == {"batch": "gone", "found": False}
    assert "correct" not in json.dumps(cmp)  # the per-row 0/1 arrays stay out


def test_groups_show_the_baselines_the_paired_interval_and_too_small_groups_and_intervals_say_what_they_cover(t):
    cmp = comparison(t)
    (g,) = cmp["groups"]
    col = g["column"]
    raw, rnd = t["base"]["groups"][col]["per_group"], t["base"]["groups"][col]["per_group"]
    good, champ = t["good"], t["champ"]
    assert cmp["gate_config"]["min_group_size"] == 30 and not cmp["gate_config"]["recorded"]
    for v in g["values"]:
        assert v["raw_pixels"] == raw[v["value"]]["accuracy"] and v["random_init"] == rnd[v["value"]]["accuracy"]
        assert v["n"] < 30 and v["too_small"] and v["judgement"] == "too small to judge"  # 12 test images each
        rows = [i for i, x in enumerate(good["groups"][col]["test_values"]) if x == v["value"]]
        assert len(rows) == v["n"]
        lo, hi = paired_bootstrap_ci([good["correct"]["linear"][i] for i in rows],
                                     [champ["correct"]["linear"][i] for i in rows])
        assert v["ci"] == [lo, hi] and lo <= v["delta"] <= hi
    assert cmp["deltas"]["linear"]["verdict"] in ("improvement", "no clear difference", "regression")
    text, page = render_text(cmp), render_html(cmp)
    flat = " ".join(text.split())
    assert "too small to judge" in text and "raw pixels" in text and "random init" in text
    assert "worst-group gap: the linear probe's accuracy on all test images minus its accuracy on the group" in flat
    assert "the test rows resampled" in flat and "do not cover training-seed variance" in flat
    assert "seed margin (5.0 points, measured by bench/seed_spread.py)" in flat and "not recorded" in flat
    assert f": {cmp['deltas']['linear']['verdict']}" in text
    assert "do not cover training-seed variance" in page and "worst-group gap: the linear probe" in page
    assert page.count("too small to judge") == len(g["values"]) + 1
    # the settings the version's gate recorded are the ones shown and applied
    cmp = comparison(t, gate_config={"seed_margin": 0.05, "min_group_size": 5, "tolerance": 0.0})
    assert cmp["gate_config"]["recorded"] and "seed margin (5.0 points" in " ".join(render_text(cmp).split())
    assert all(not v["too_small"] and v["judgement"] in ("ok", "lost") for v in cmp["groups"][0]["values"])


def test_a_champion_that_changed_since_the_probe_is_shown_from_its_own_run_without_a_paired_difference(t):
    cmp = comparison(t, champion_version="7")
    assert not cmp["same_split"] and cmp["deltas"] == {}
    assert cmp["probes"][1]["label"] == "version 1 (champion, its own probe run)"
    assert cmp["probes"][1]["linear"] == t["champ"]["linear"]  # the champion's own report, not the subject's copy
    assert any("not measured on the same split" in n for n in cmp["notes"])
    assert "no paired difference" in render_text(cmp)


def test_nothing_to_review_and_the_champion_alone():
    empty = build_comparison("m", None, None, {}, [], {})
    assert "no candidate and no champion" in render_text(empty)
    assert "No candidate and no champion" in render_html(empty)


def test_the_champion_alone(t):
    champ = facts("1", probe_report(t["champ"], t["base"], t["base"]), "champion")
    cmp = build_comparison("m", None, champ, {}, [], {})
    text = render_text(cmp)
    assert "no candidate: no version is waiting for review; the champion is version 1" in text
    assert cmp["probes"][0]["label"] == "version 1 (champion)" and "GATE" not in text


def test_bias_summary_keeps_shares_drift_and_near_duplicates():
    b = bias_summary("b", bias_json("b"))
    assert b["groups"][0]["under"] == [SCRIPT] and b["groups"][0]["shares"][SCRIPT] == pytest.approx(0.05)
    assert [d["feature"] for d in b["drifted"]] == ["brightness"] and b["drift_measured"]
    nd = b["near_duplicates"]
    assert (nd["cluster_count"], nd["images_in_clusters"], nd["cross_batch_count"]) == (1, 4, 4)  # 0, 1, 2**40, 2**50+7: one chain
    assert b["flags"] == {"group_representation": True, "attribute_drift": False, "image_drift": True,
                          "near_duplicates": True}


HOSTILE = [SCRIPT, IMG, ANSI, "\x1b[2J\rover", "a\u202eb", "q\"'&<>", "line\nbreak", "\x9b31m", "tab\there"]


def _no_raw_controls(s: str) -> bool:
    return all(c == "\n" or (c >= " " and not "\x7f" <= c <= "\x9f") for c in s) and "\u202e" not in s


def test_hostile_strings_are_escaped_in_text(t):
    for h in HOSTILE:
        text = render_text(comparison(t, h))
        assert _no_raw_controls(text), h
        assert terminal(h) in text
    text = render_text(comparison(t, "x"))
    assert "batch b3<img src=x onerror=alert(1)>\\x1b[2J" in text and "domain\\x1b[31mred\\x1b[0m" in text


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = set(), set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs |= {a for a, _ in attrs}

    def handle_data(self, data):
        self.text.append(data)


ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "span", "table", "tr", "th",
                "td", "code", "b", "ul", "li", "pre", "div", "figure", "img", "figcaption"}
ALLOWED_ATTRS = {"lang", "charset", "http-equiv", "content", "class", "alt", "src"}


def check_html(page: str, hostile: str) -> None:
    p = _Tags()
    p.feed(page)
    assert p.tags <= ALLOWED_TAGS, p.tags - ALLOWED_TAGS
    assert p.attrs <= ALLOWED_ATTRS, p.attrs - ALLOWED_ATTRS
    assert html_text(hostile) in page and visible(hostile) in "".join(p.text)  # shown as text, exactly visible()
    assert _no_raw_controls(page.replace("\t", " "))


def test_hostile_strings_are_escaped_in_html(t):
    for h in HOSTILE:
        check_html(render_html(comparison(t, h)), h)
    page = render_html(comparison(t, "x"))
    assert "default-src 'none'; img-src data:" in page  # nothing but inline style and data: images may load


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=1, max_size=20))
def test_any_string_from_the_data_stays_text(t, s):
    cmp = comparison(t, s)
    assert _no_raw_controls(render_text(cmp))
    check_html(render_html(cmp), s)


def test_plots_are_inline_png_data_uris(t):
    from ssl_ops.review.plots import label_fraction_curve

    png = figure_png(label_fraction_curve(probe_report(t["good"], t["base"], t["base"], champion=t["champ"])))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    page = render_html(comparison(t), [(f"caption {SCRIPT}", png)])
    assert page.count('src="data:image/png;base64,') == 1 and f"caption {html_text(SCRIPT)}" in page
