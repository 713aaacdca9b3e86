r"""One escaping rule for everything from the data that a person sees, and MLflow keys built from data.

    html_text("<img src=x onerror=alert(1)>")  # '&lt;img src=x onerror=alert(1)&gt;'
    md_text("a|b`c")                          # 'a&#124;b\`c' (table cells and prose)
    md_code("x`y")                            # '`` x`y ``' (a code span, in prose and lists)
    terminal("ok\x1b[2J")                     # 'ok\x1b[2J' (the ESC shown, not obeyed)
    keys = MlflowKeys()
    keys.key("probe_group", "domain", "photo (dslr)")  # 'probe_group/domain/photo _dslr_-h1a076fe963'
    keys.mapping  # {'probe_group/domain/photo _dslr_-h1a076fe963': {'prefix': 'probe_group', 'values': [...]}}

File and folder names, attribute values, labels, group names and batch names are untrusted: a value may hold
markup, a table's `|`, a backtick, a newline, terminal control sequences (ESC, CR, C1 controls) or bidi
overrides that reorder what is shown. Every function here first makes such characters visible (`visible`:
ESC as `\x1b`, a newline as `\n`, U+202E as `\u202e`, with `\` itself doubled, so the rule is injective)
and then escapes for its target; rendered, HTML and Markdown read exactly `visible(value)`. Pure functions;
MlflowKeys records key -> value.
"""

from __future__ import annotations

import hashlib
import html as _html
import re
import unicodedata

# Format characters that reorder or hide text (Trojan Source, CVE-2021-42574), plus line/paragraph separators.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SEPARATORS = frozenset("\u2028\u2029")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _needs_escape(ch: str) -> bool:
    return ch in _NAMED or ch in _BIDI or ch in _SEPARATORS or unicodedata.category(ch) in ("Cc", "Cs")


def _visible_char(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    o = ord(ch)
    return f"\\x{o:02x}" if o <= 0xFF else f"\\u{o:04x}"


def visible(value: object) -> str:
    """str(value) with control characters (C0, DEL, C1: ESC, \\r, \\n, \\x7f, \\x9b...), bidi overrides, line
    separators and lone surrogates written as backslash escapes, and `\\` doubled. Injective; one line."""
    s = "" if value is None else str(value)
    if not any(_needs_escape(c) for c in s):
        return s
    return "".join(_visible_char(c) if _needs_escape(c) else c for c in s)


def terminal(value: object) -> str:
    """For a terminal or a log line: nothing in the value can move the cursor, change colours, clear the
    screen, overwrite the line (\\r) or reorder text; it stays on one line."""
    return visible(value)


def html_text(value: object) -> str:
    """For HTML text and quoted attribute values: `& < > " '` as entities, controls made visible."""
    return _html.escape(visible(value), quote=True)


# Markdown: `\` and the characters that start formatting take a backslash; `< > &` and `|` become entities, so
# a value cannot open a tag or an entity, split a table row, start a heading or emphasis, or leave a code span.
_MD_BACKSLASH = frozenset("\\`*_[]#~")
_MD_ENTITY = {"<": "&lt;", ">": "&gt;", "&": "&amp;", "|": "&#124;"}


def md_text(value: object) -> str:
    """For Markdown text, table cells included (CommonMark/GFM, Python-Markdown, Dagster's and MLflow's
    viewers): rendered, it reads exactly `visible(value)`; it stays in its table cell and on its line."""
    out = []
    for c in visible(value):
        if c in _MD_ENTITY:
            out.append(_MD_ENTITY[c])
        elif c in _MD_BACKSLASH:
            out.append("\\" + c)
        else:
            out.append(c)
    s = "".join(out)
    # a table cell trims its spaces and a heading its trailing ones: keep them visible as entities
    if s[:1] == " ":
        s = "&#32;" + s[1:]
    if s[-1:] == " ":
        s = s[:-1] + "&#32;"
    return s


def md_code(value: object) -> str:
    """A Markdown code span holding `visible(value)` literally, whatever the value (its fence is longer than
    any run of backticks in it). For prose and lists only: inside a table row use md_text, because GFM splits
    a row at every `|`, code spans included."""
    s = visible(value)
    run = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (run + 1)
    return f"{fence} {s} {fence}"


# MLflow metric, param and tag keys: alphanumerics, `_ - . space /` (mlflow.utils.validation also takes `:`
# outside Windows and any Unicode word character; we keep to ASCII), at most 250 characters, and a key must
# be a normalised relative path (no `//`, `./`, `..`). A component is one data value; `/` joins components.
MLFLOW_KEY_MAX = 250
COMPONENT_MAX = 80  # characters of readable text kept from one value
_KEY_BAD = re.compile(r"[^A-Za-z0-9_.\- ]+")
_HASHED = re.compile(r"-h[0-9a-f]{10,}$")  # the suffix of a changed component: `-h` + 10 or more hex of its sha256


def key_component(value: object, hash_len: int = 10) -> str:
    """One data value as a valid, readable MLflow key component (no `/`). Unchanged when the value is already
    valid and does not look hashed; otherwise the readable part plus `-h` and a hash of the original value, so
    that distinct values give distinct components."""
    s = "" if value is None else str(value)
    clean = _KEY_BAD.sub("_", s)
    clean = re.sub(r"\.{2,}", "_", clean).strip(" ")  # no `..`; no leading/trailing space
    if clean in ("", "."):
        clean = "empty" if s == "" else "_"
    if clean == s and len(s) <= COMPONENT_MAX and not _HASHED.search(s):
        return s
    digest = hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()[:hash_len]
    return f"{clean[:COMPONENT_MAX].rstrip(' .')}-h{digest}"


class MlflowKeys:
    """Builds MLflow keys from fixed prefixes and data values and records key -> original values.

        keys = MlflowKeys()
        name = keys.key("probe_group", col, value)   # 'probe_group/<col>/<value>'
        keys.mapping  # {name: {"prefix": "probe_group", "values": [col, value]}}
    """

    def __init__(self) -> None:
        self.mapping: dict[str, dict] = {}

    def key(self, prefix: str, *values: object) -> str:
        if _KEY_BAD.search(prefix.replace("/", "")) or not prefix:
            raise ValueError(f"MLflow key prefix {prefix!r} must be a valid key itself")
        original = {"prefix": prefix, "values": [None if v is None else str(v) for v in values]}
        for hash_len in (10, 16, 24, 64):
            parts = [key_component(v, hash_len) for v in values]
            k = "/".join([prefix, *parts])
            if len(k) > MLFLOW_KEY_MAX:
                k = k[:MLFLOW_KEY_MAX - 18].rstrip(" ./") + "-h" + hashlib.sha256(k.encode()).hexdigest()[:16]
            if self.mapping.get(k, original) == original:
                self.mapping[k] = original
                return k
        raise ValueError(f"no collision-free MLflow key for {original}")  # a sha256 collision

    def changed(self) -> dict[str, dict]:
        """The keys whose components differ from their values (what a reader needs the mapping for)."""
        return {k: v for k, v in self.mapping.items() if k != "/".join([v["prefix"], *map(str, v["values"])])}
