"""Contracts load with clear errors, compile to a GE suite whose failures land in the right check."""

import pyarrow as pa
import pytest

from imagefiles import jpeg_bytes, png_bytes, write
from data_contracts import ContractError, load_contract
from data_contracts.contract import CONTRACTS_DIR
from data_contracts.ge_suite import build_suite, validate_manifest
from ssl_ops.ingest import ImageLimits, scan_batch


def test_shipped_contracts_load():
    c = load_contract("unlabeled_images")
    assert c.label == "unlabeled_images@1.0.0" and c.blocking("schema") and not c.blocking("group_representation")
    assert len(c.digest) == 64 and c.images.min_side == 8
    e = load_contract("eval_images")
    assert e.labels.min_classes == 2 and e.blocking("leakage") and e.required_attributes == ("label",)


@pytest.mark.parametrize("edit,needle", [
    (lambda t: t.replace("  schema: block", "  schema: maybe"), "must be 'block' or 'warn'"),
    (lambda t: t.replace("owner: ml-platform", "owner: ml-platform\ncolour: blue"), "unknown key"),
    (lambda t: t.replace("  min_side: 8 ", "  min_side: eight "), "'min_side' must be int"),
    (lambda t: t.replace("  width: int32", "  width: int33"), "not one of"),
    (lambda t: t.replace("  groups: {}", "  groups: {domain: {min_share: 1.5}}"), "within 0..1"),
    (lambda t: t + "\n  : [", "not valid YAML"),
    # every numeric field is checked when the contract is read, with the key named (not at use)
    (lambda t: t.replace("max_pixels: 64000000", "max_pixels: -1"), r"images.max_pixels must be >= 1 .*got -1"),
    (lambda t: t.replace("max_bytes: 67108864", "max_bytes: 0"), r"images.max_bytes must be >= 1 bytes, got 0"),
    (lambda t: t.replace("  min_side: 8 ", "  min_side: 0 "), r"images.min_side must be >= 1 px, got 0"),
    (lambda t: t.replace("max_side: 16384", "max_side: 4"), r"images.max_side must be >= 8 px"),
    (lambda t: t.replace("reference_batches: 5", "reference_batches: -2"), r"bias.reference_batches must be >= 0"),
    (lambda t: t.replace("psi_max: 0.25", "psi_max: 0"), r"bias.psi_max must be > 0"),
    (lambda t: t.replace("p_value_min: 0.001", "p_value_min: 1.5"), r"bias.p_value_min must be >= 0 and <= 1"),
    (lambda t: t.replace("p_value_min: 0.001", "p_value_min: .nan"), r"bias.p_value_min must be a number"),
    (lambda t: t.replace("near_duplicate_bits: 4", "near_duplicate_bits: 64"), r"bias.near_duplicate_bits must be >= 0 and <= 63"),
    (lambda t: t.replace("near_duplicate_max_share: 0.05", "near_duplicate_max_share: -0.1"),
     r"bias.near_duplicate_max_share must be >= 0"),
    (lambda t: t.replace("  min_images: 1 ", "  min_images: -3 "), r"batch.min_images must be >= 0, got -3"),
    (lambda t: t.replace("  min_images: 1 ", "  min_images: one "), r"batch: 'min_images' must be int"),
    (lambda t: t.replace("  links: inside ", "  links: everywhere "), r"batch.links must be one of"),
    (lambda t: t.replace("  groups: {}", "  groups: {site: 5}"), r"attributes.groups.site must be a mapping"),
    (lambda t: t.replace("  groups: {}", "  groups: {site: {values: x}}"), r"attributes.groups.site.values must be a list"),
    (lambda t: t.replace("  formats: [JPEG, PNG, WEBP, BMP, GIF, TIFF, MPO]", "  formats: []"), r"images.formats is empty"),
    (lambda t: t.replace("  min_images: 1 ", "  min_images: 1\n  size: 3\n "), r"batch: unknown key.*size"),
])
def test_bad_contracts_say_what_to_fix(tmp_path, edit, needle):
    p = tmp_path / "c.yaml"
    p.write_text(edit((CONTRACTS_DIR / "unlabeled_images.yaml").read_text()))
    with pytest.raises(ContractError, match=needle):
        load_contract(p)


@pytest.mark.parametrize("edit,needle", [
    (lambda t: t.replace("min_classes: 2", "min_classes: 0"), r"labels.min_classes must be >= 1"),
    (lambda t: t.replace("near_duplicate_bits: 4", "near_duplicate_bits: -1"), r"leakage.near_duplicate_bits must be >= 0"),
])
def test_bad_eval_contracts_say_what_to_fix(tmp_path, edit, needle):
    p = tmp_path / "c.yaml"
    text = (CONTRACTS_DIR / "eval_images.yaml").read_text()
    assert edit(text) != text, "the edit must change the shipped contract"
    p.write_text(edit(text))
    with pytest.raises(ContractError, match=needle):
        load_contract(p)


def test_missing_contract_lists_the_shipped_ones():
    with pytest.raises(ContractError, match="unlabeled_images"):
        load_contract("no_such_contract")


def contract_with(tmp_path, text_edit):
    p = tmp_path / "c.yaml"
    p.write_text(text_edit((CONTRACTS_DIR / "unlabeled_images.yaml").read_text()))
    return load_contract(p)


@pytest.fixture
def manifest(tmp_path):
    d = tmp_path / "b"
    write(d / "a.jpg", jpeg_bytes(1))
    write(d / "b.png", png_bytes("RGBA"))
    write(d / "c.jpg", jpeg_bytes(2, size=(300, 40)))
    (d / "metadata.csv").write_text("path,domain\na.jpg,photo\nb.png,cartoon\n")
    return scan_batch(d, "b", ImageLimits(), workers=1).accepted


def test_a_clean_manifest_passes_and_writes_data_docs(tmp_path, manifest):
    out = validate_manifest(load_contract("unlabeled_images"), manifest, tmp_path / "docs", "b")
    assert out.success and set(out.checks) == {"schema", "row_count", "unique_ids", "image_constraints"}
    assert out.docs_index.is_file() and "<html" in out.docs_index.read_text().lower()
    assert list((tmp_path / "docs" / "validations").rglob("*.html"))


def test_failures_land_in_their_checks(tmp_path, manifest):
    c = contract_with(tmp_path, lambda t: t.replace("required: []", "required: [domain, site]")
                      .replace("max_side: 16384", "max_side: 256")
                      .replace("  groups: {}", "  groups: {domain: {min_share: 0.1, values: [photo, sketch]}}"))
    out = validate_manifest(c, manifest, None, "b")
    assert not out.success
    assert not out.checks["required_attributes"].passed and not out.checks["image_constraints"].passed
    assert not out.checks["group_values"].passed and out.checks["schema"].passed
    req = out.checks["required_attributes"]
    assert {(e.expectation, e.column) for e in req.expectations if not e.success} == {
        ("expect_column_to_exist", "attr_site"), ("expect_column_values_to_not_be_null", "attr_domain")}
    bad_width = [e for e in out.checks["image_constraints"].expectations if not e.success]
    assert [(e.column, e.unexpected_count, e.examples) for e in bad_width] == [("width", 1, [300])]
    groups = [e for e in out.checks["group_values"].expectations if not e.success][0]
    assert groups.examples == ["cartoon"]


def test_schema_types_and_uniqueness(tmp_path, manifest):
    broken = manifest.set_column(manifest.schema.get_field_index("width"), "width",
                                 manifest.column("width").cast(pa.float64()))
    broken = pa.concat_tables([broken, broken.slice(0, 1)])
    out = validate_manifest(load_contract("unlabeled_images"), broken, None, "b")
    assert not out.checks["schema"].passed and "arrow_type(width)" in out.checks["schema"].summary()
    assert not out.checks["unique_ids"].passed
    assert not out.checks["schema"].passed and out.checks["schema"].blocking
    missing = manifest.drop_columns(["phash"])
    assert not validate_manifest(load_contract("unlabeled_images"), missing, None, "b").checks["schema"].passed


def test_empty_manifest_fails_row_count(tmp_path):
    (tmp_path / "e").mkdir()
    m = scan_batch(tmp_path / "e", "e", ImageLimits(), workers=1).accepted
    out = validate_manifest(load_contract("unlabeled_images"), m, None, "e")
    assert not out.checks["row_count"].passed and "observed 0" in out.checks["row_count"].summary()


def test_suite_is_built_from_the_contract():
    suite = build_suite(load_contract("eval_images"), ["attr_label"])
    checks = {e.meta["check"] for e in suite.expectations}
    assert checks == {"schema", "row_count", "unique_ids", "image_constraints", "required_attributes", "labels"}
