"""ssl_ops.escape on a corpus of hostile values and on generated ones (hypothesis): what a person sees of a
value is the value itself, made visible, and it can open no tag, break no table, move no cursor, and every
MLflow key built from it is valid and distinct."""

import html
import re
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.utils.validation import _validate_metric_name, _validate_param_name, _validate_tag_name

from ssl_ops.escape import (MLFLOW_KEY_MAX, MlflowKeys, html_text, key_component, md_code, md_text, terminal,
                            visible)

HOSTILE = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", '"><svg onload=alert(1)>', "' onmouseover='x",
    "a|b|c", "`code`", "``", "x`y``z", "line1\nline2", "\r\n# heading", "# heading", "> quote", "- item", "1. item",
    "**bold** _em_ ~~del~~", "[link](javascript:alert(1))", "![img](x)", "&amp; &lt;", "&#124;", "\\", "\\|", "back\\`tick",
    "\x1b[31mred\x1b[0m", "\x1b]0;title\x07", "over\rwrite", "del\x7f", "c1\x9b31m", "nul\x00", "tab\there",
    "\u202eevil\u202c", "\u2066isolate\u2069", "\u200fmark", "line\u2028sep", "ünïcödé 日本語 🙂", "x" * 5000, "", " ",
    " padded ", "photo (dslr)", "art+painting", "site#3", "a,b", "x&y", "..", ".", "/", "a/../b", "none", "-h0123456789",
    "a-h0123456789", "\ud800",
]
BIDI_AND_BACKSLASH = set("\\\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


class Collect(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def parse(fragment: str) -> Collect:
    p = Collect()
    p.feed(fragment)
    p.close()
    return p


def render_md(text: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").enable("strikethrough").render(text)


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_visible_and_terminal_show_every_control_on_one_line(value):
    v = visible(value)
    assert not CONTROL.search(v) and "\n" not in v
    assert terminal(value) == v
    if value.isprintable() and not set(value) & BIDI_AND_BACKSLASH:
        assert v == value  # ordinary values are shown as they are


def test_terminal_escapes_named_sequences():
    assert terminal("\x1b[2Jgone") == "\\x1b[2Jgone"
    assert terminal("ok\rFAKE") == "ok\\rFAKE"
    assert terminal("a\nb") == "a\\nb"
    assert terminal("\x9b31m") == "\\x9b31m" and terminal("\x7f") == "\\x7f"
    assert terminal("\u202etxt") == "\\u202etxt"
    assert terminal("C:\\new") == "C:\\\\new"  # a literal backslash-n differs from a newline
    assert terminal(None) == ""


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_html_text_opens_no_tag_and_shows_the_value(value):
    for wrap in ("<div>{}</div>", '<span title="{}">t</span>', "<span title='{}'>t</span>"):
        p = parse(wrap.format(html_text(value)))
        assert len(p.tags) == 1  # the wrapper only: nothing injected
        (tag, attrs), = p.tags
        if "title" in wrap:
            assert attrs == [("title", visible(value))]
        else:
            assert "".join(p.text) == visible(value)
    assert html.unescape(html_text(value)) == visible(value)


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_md_text_renders_as_the_value_in_a_table_cell_and_in_prose(value):
    row = f"| {md_text(value)} | 2 |"
    out = render_md(f"| value | n |\n|---|---|\n{row}\n")
    p = parse(out)
    tags = [t for t, _ in p.tags]
    assert tags.count("td") == 2 and tags.count("tr") == 2, out  # the row kept its two cells
    assert set(tags) <= {"table", "thead", "tbody", "tr", "th", "td"}, out  # no element from the value
    cell = re.search(r"<td>(.*?)</td>", out, re.S).group(1)
    assert html.unescape(cell) == visible(value)
    prose = render_md(f"Value: {md_text(value)} end.\n")
    assert [t for t, _ in parse(prose).tags] == ["p"], prose
    assert html.unescape(prose) == f"<p>Value: {visible(value)} end.</p>\n"
    assert "\n" not in md_text(value) and "|" not in md_text(value) and "<" not in md_text(value)


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_md_code_is_one_code_span_holding_the_value(value):
    out = render_md(f"- see {md_code(value)} here\n")
    p = parse(out)
    assert [t for t, _ in p.tags] == ["ul", "li", "code"], out
    code = re.search(r"<code>(.*?)</code>", out, re.S).group(1)
    shown = visible(value)
    if shown.strip(" "):
        assert html.unescape(code) == shown


def test_mlflow_keys_for_the_group_values_mlflow_refused():
    keys = MlflowKeys()
    names = {v: keys.key("probe_group", "domain", v) for v in ("photo (dslr)", "art+painting", "site#3", "a,b", "x&y")}
    for name in names.values():
        _validate_metric_name(name)
        _validate_param_name(name)
        _validate_tag_name(name)
    assert names["photo (dslr)"].startswith("probe_group/domain/photo _dslr_-h")
    assert len(set(names.values())) == 5
    assert {k: v["values"][1] for k, v in keys.mapping.items()} == {n: v for v, n in names.items()}
    assert keys.key("probe_group", "domain", "photo") == "probe_group/domain/photo"  # valid values stay as they are
    assert set(keys.changed()) == set(names.values())
    assert MlflowKeys().key("probe_group", "domain", "photo (dslr)") == names["photo (dslr)"]  # deterministic


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_mlflow_key_of_every_hostile_value_is_valid(value):
    k = MlflowKeys().key("probe_group", value, value)
    _validate_metric_name(k)
    assert len(k) <= MLFLOW_KEY_MAX


def test_a_value_that_looks_hashed_cannot_take_another_values_key():
    forged = key_component("photo (dslr)")  # 'photo _dslr_-h...' is itself a valid key
    assert key_component(forged) != forged


def test_prefix_must_be_valid():
    with pytest.raises(ValueError):
        MlflowKeys().key("probe group(", "x")


# --- properties ----------------------------------------------------------------------------------------------

TEXT = (st.text(st.characters(codec="utf-8"), max_size=60)
        | st.text(alphabet="<>&|`*_[]#\\\n\r\x1b ab.-/()+,", max_size=30))


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_md_text_never_holds_a_raw_pipe_tag_backtick_or_newline(value):
    s = md_text(value)
    assert "|" not in s and "<" not in s and ">" not in s and "\n" not in s and "\r" not in s
    for m in re.finditer("`", s):  # every backtick (and `*`, `_`, `[`, `#`) follows an odd run of backslashes
        run = len(s[:m.start()]) - len(s[:m.start()].rstrip("\\"))
        assert run % 2 == 1
    assert not re.search(r"&(?!(?:lt|gt|amp|#124|#32);)", s)  # every & starts one of our entities


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_html_text_and_terminal_properties(value):
    h = html_text(value)
    assert not set(h) & set("<>\"'") and html.unescape(h) == visible(value)
    assert not CONTROL.search(terminal(value))


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT, min_size=2, max_size=8, unique=True))
def test_sanitised_keys_are_valid_and_distinct(values):
    keys = MlflowKeys()
    names = [keys.key("probe_group", v) for v in values]
    for n in names:
        _validate_metric_name(n)
        assert len(n) <= MLFLOW_KEY_MAX
    assert len(set(names)) == len(values)
    assert [keys.mapping[n]["values"][0] for n in names] == values
    assert names == [MlflowKeys().key("probe_group", v) for v in values]  # deterministic


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT)
def test_visible_is_injective(a, b):
    if a != b:
        assert visible(a) != visible(b) and md_text(a) != md_text(b) and html_text(a) != html_text(b)
