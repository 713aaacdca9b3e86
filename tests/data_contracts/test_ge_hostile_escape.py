"""The real Great Expectations validation with hostile attribute values, a hostile contract value and a hostile
batch (run) name: the data docs HTML, parsed, holds no element or attribute from the data, shows the values as
text, and the check outcomes are those of the unescaped data."""

import html
from html.parser import HTMLParser

import pytest

from data_contracts import load_contract
from data_contracts.contract import CONTRACTS_DIR
from data_contracts.ge_suite import validate_manifest
from imagefiles import jpeg_bytes, png_bytes, write
from ssl_ops.escape import html_text
from ssl_ops.ingest import ImageLimits, scan_batch

SCRIPT, IMG, PIPE = "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "a|b`c"
RUN = "b`'<img src=y onerror=alert(2)>"  # `'` would end the JS string GE puts the name in
GROUP_VALUE = "<b>ok</b> & photo"  # a contract value that is also in the data: must still count as allowed


class Docs(HTMLParser):
    """Elements, attributes, script bodies and text of an HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements, self.scripts, self.text, self._in_script = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def parse(path) -> Docs:
    d = Docs()
    d.feed(path.read_text(encoding="utf-8"))
    d.close()
    return d


@pytest.fixture
def hostile(tmp_path):
    d = tmp_path / "b"
    write(d / "a.jpg", jpeg_bytes(1))
    write(d / "b.png", png_bytes("RGBA"))
    write(d / "c.jpg", jpeg_bytes(2))
    write(d / "d.jpg", jpeg_bytes(3))
    (d / "metadata.csv").write_text(f'path,domain\na.jpg,{SCRIPT}\nb.png,"{IMG}"\nc.jpg,{PIPE}\nd.jpg,{GROUP_VALUE}\n')
    manifest = scan_batch(d, "b", ImageLimits(), workers=1).accepted
    p = tmp_path / "c.yaml"
    p.write_text((CONTRACTS_DIR / "unlabeled_images.yaml").read_text().replace(
        "  groups: {}", f"  groups: {{domain: {{min_share: 0.1, values: [photo, '{GROUP_VALUE}']}}}}"))
    return load_contract(p), manifest


# default: the escaping validate_manifest applies on its own; html_text: the one rule the asset injects
@pytest.mark.parametrize("escape", [None, html_text], ids=["default", "ssl_ops.escape"])
def test_data_docs_show_hostile_values_as_text(tmp_path, hostile, escape):
    contract, manifest = hostile
    kw = {} if escape is None else {"escape": escape}
    out = validate_manifest(contract, manifest, tmp_path / "docs", RUN, **kw)

    groups = out.checks["group_values"]
    assert not groups.passed and out.checks["schema"].passed and out.checks["unique_ids"].passed
    (bad,) = [e for e in groups.expectations if not e.success]
    assert bad.unexpected_count == 3 and sorted(bad.examples) == sorted([SCRIPT, IMG, PIPE])  # originals back
    assert GROUP_VALUE not in bad.examples  # an allowed value with `<` and `&` is still allowed

    pages = sorted((tmp_path / "docs").rglob("*.html"))
    validation = [p for p in pages if "validations" in p.parts]
    assert len(validation) == 1 and out.docs_index in pages
    for page in pages:
        d = parse(page)
        # inline scripts carry the batch name into a table GE renders as HTML: only in escaped form
        assert not any(raw in s for s in d.scripts for raw in ("<img", "<script", "'<", "`'")), page
        assert not any("onerror" in a or "onload" in a for _, attrs in d.elements for a in attrs), page
        assert not [attrs for tag, attrs in d.elements if tag == "img" and attrs.get("src") in ("x", "y")], page
        assert not [tag for tag, _ in d.elements if tag == "b"], page
    text = "".join(parse(validation[0]).text)
    for v in (SCRIPT, IMG, PIPE):
        assert v in text  # the value is shown, as text
    # the index lists the batch by name in a table its script builds as HTML: the name is there, escaped
    assert html.escape(RUN) in "".join(parse(out.docs_index).scripts)


@pytest.mark.parametrize("name", ["e\x1b7x", "b3\u202eevil", "back\\slash", "50%/x"])
def test_batch_names_that_escape_to_backslashes_still_validate(tmp_path, name):
    """A control character or bidi override in a batch folder's name escapes to `\\x1b`/`\\u202e`, and GE's store
    refuses keys with `\\` or `/`: the run name is percent-encoded for GE, so validation runs (it crashed)."""
    write(tmp_path / "b" / "a.jpg", jpeg_bytes(1))
    table = scan_batch(tmp_path / "b", "b", ImageLimits(), workers=1).accepted
    out = validate_manifest(load_contract("unlabeled_images"), table, docs_dir=tmp_path / "docs", run_name=name,
                            escape=html_text)
    assert out.success and out.docs_index.is_file()
    assert "\x1b" not in "".join(p.read_text() for p in (tmp_path / "docs").rglob("*.html"))
