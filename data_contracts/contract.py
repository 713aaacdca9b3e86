"""Load and validate a data contract (YAML) into typed dataclasses.

    contract = load_contract("unlabeled_images")            # a shipped contract, by name
    contract = load_contract("my_contracts/site_a.yaml")    # or a file of your own

Unknown keys, missing sections and wrong types raise ContractError naming the key and the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CONTRACTS_DIR = Path(__file__).parent / "contracts"
SEVERITIES = ("block", "warn")
KNOWN_CHECKS = ("schema", "row_count", "unique_ids", "image_constraints", "required_attributes", "group_values",
                "group_representation", "attribute_drift", "image_drift", "near_duplicates", "labels", "leakage")
LINK_POLICIES = ("inside", "follow")  # batch.links; the same names as ssl_ops.ingest.scan.LINK_POLICIES
ARROW_TYPES = ("string", "int32", "int64", "uint64", "float", "double", "bool")


# Confirming a pHash match by the pixels (ssl_ops.pixel_match: both images decoded to 64x64 luminance the same
# way). Mean absolute difference (grey levels, 0..255) after matching brightness and contrast, at or below which,
# with the correlation at or above MIN_CORRELATION, a pHash match is a copy. Chosen from measurements
# (bench/phash_confirm.py, PACS and CIFAR-10): re-encoded (JPEG q30), resized, brightened/darkened 15%,
# contrast x1.3, desaturated or grey copies of face photos: difference <= 9.2, correlation >= 0.965; PACS
# face photos of different people within 12 pHash bits: difference >= 19.6; CIFAR-10's test/train pHash pairs
# within 4 bits: 99 of 118 confirmed, the rest shifted or rescaled shots of a scene.
MAX_PIXEL_DIFFERENCE = 16.0
# Pearson correlation (-1..1) of the same thumbnails. It tells apart line drawings on white (PACS sketches of
# different objects: grey-level differences under 16, correlation mostly under 0.8; 5 of 535 pHash pairs pass).
MIN_CORRELATION = 0.85


class ContractError(ValueError):
    """A contract file that cannot be used; the message names the file and the key to fix."""


@dataclass(frozen=True)
class ImageRules:
    formats: tuple[str, ...]
    modes: tuple[str, ...]
    min_side: int  # px
    max_side: int  # px
    max_pixels: int  # width*height
    max_bytes: int  # per file
    orientation_sensitive: bool = False  # a mirrored image means something else (digits, text): no flips in training


@dataclass(frozen=True)
class GroupRule:
    min_share: float  # each value's share of a batch must be at least this (0..1)
    values: tuple[str, ...] = ()  # the allowed values; empty: any


@dataclass(frozen=True)
class BiasRules:
    reference_batches: int = 5
    psi_max: float = 0.25
    p_value_min: float = 0.001
    near_duplicate_bits: int = 4
    near_duplicate_max_share: float = 0.05
    # grey levels (0..255): a pHash pair is a near duplicate only when its mean pixel difference (32x32
    # luminance, brightness and contrast matched; ssl_ops.pixel_match) is at or below this
    near_duplicate_max_pixel_difference: float = MAX_PIXEL_DIFFERENCE
    near_duplicate_min_correlation: float = MIN_CORRELATION  # (-1..1) and the thumbnails' correlation at least this


@dataclass(frozen=True)
class LabelRules:
    min_classes: int = 2
    min_per_class: int = 1


@dataclass(frozen=True)
class Contract:
    name: str
    version: str
    description: str
    manifest: dict[str, str]  # column -> Arrow type name
    images: ImageRules
    min_images: int
    required_attributes: tuple[str, ...]
    groups: dict[str, GroupRule]
    bias: BiasRules
    checks: dict[str, str]  # check name -> "block" | "warn"
    labels: LabelRules | None = None
    leakage_bits: int | None = None
    # grey levels (0..255): a pHash match is a leak (and a copy left out of the shards) only when its mean
    # pixel difference (ssl_ops.pixel_match) is at or below this
    leakage_max_pixel_difference: float = MAX_PIXEL_DIFFERENCE
    leakage_min_correlation: float = MIN_CORRELATION  # (-1..1) and the thumbnails' correlation at least this
    links: str = "inside"  # landing policy for symbolic links: one of LINK_POLICIES
    source: str = ""  # the file it was loaded from
    digest: str = ""  # sha256 of the file's bytes
    raw: dict = field(default_factory=dict, repr=False)

    def blocking(self, check: str) -> bool:
        return self.checks.get(check) == "block"

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


def _get(d: dict, key: str, typ, where: str, default=...):
    if key not in d:
        if default is ...:
            raise ContractError(f"{where}: missing key '{key}'")
        return default
    v = d[key]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise ContractError(f"{where}: '{key}' must be {getattr(typ, '__name__', typ)}, got {v!r}")
    return v


def _range(where: str, key: str, v, lo=None, hi=None, lo_open: bool = False, what: str = "") -> None:
    """Raise ContractError naming the key when v lies outside [lo, hi] (or (lo, hi] with lo_open)."""
    if isinstance(v, float) and v != v:
        raise ContractError(f"{where}.{key} must be a number, got {v!r}")
    low = lo is not None and (v <= lo if lo_open else v < lo)
    high = hi is not None and v > hi
    if low or high:
        bounds = " and ".join(b for b in ((f"> {lo}" if lo_open else f">= {lo}") if lo is not None else "",
                                          f"<= {hi}" if hi is not None else "") if b)
        raise ContractError(f"{where}.{key} must be {bounds}{what}, got {v!r}")


def _only(d: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise ContractError(f"{where}: unknown key(s) {extra}; allowed: {sorted(allowed)}")


def load_contract(name_or_path: str | Path) -> Contract:
    p = Path(name_or_path)
    if not p.suffix and not p.exists():
        p = CONTRACTS_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        shipped = sorted(x.stem for x in CONTRACTS_DIR.glob("*.yaml"))
        raise ContractError(f"contract {name_or_path!r} not found (shipped contracts: {shipped})")
    text = p.read_bytes()
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ContractError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(d, dict):
        raise ContractError(f"{p}: a contract is a YAML mapping")
    w = str(p)
    _only(d, {"contract", "version", "description", "owner", "manifest", "images", "batch", "attributes", "bias",
              "checks", "labels", "leakage"}, w)
    manifest = _get(d, "manifest", dict, w)
    for col, typ in manifest.items():
        if typ not in ARROW_TYPES:
            raise ContractError(f"{w}: manifest.{col}: type {typ!r} not one of {ARROW_TYPES}")
    im = _get(d, "images", dict, w)
    _only(im, {"formats", "modes", "min_side", "max_side", "max_pixels", "max_bytes", "orientation_sensitive"},
          f"{w}: images")
    images = ImageRules(tuple(_get(im, "formats", list, w)), tuple(str(m) for m in _get(im, "modes", list, w)),
                        _get(im, "min_side", int, f"{w}: images"), _get(im, "max_side", int, f"{w}: images"),
                        _get(im, "max_pixels", int, f"{w}: images"), _get(im, "max_bytes", int, f"{w}: images"),
                        _get(im, "orientation_sensitive", bool, f"{w}: images", False))
    for key in ("formats", "modes"):
        if not getattr(images, key):
            raise ContractError(f"{w}: images.{key} is empty: list at least one (e.g. formats: [JPEG, PNG], "
                                f"modes: [RGB, L]); every image would be refused")
    _range(f"{w}: images", "min_side", images.min_side, 1, what=" px")
    _range(f"{w}: images", "max_side", images.max_side, images.min_side, what=" px (and at least min_side)")
    _range(f"{w}: images", "max_pixels", images.max_pixels, 1,
           what=" (width x height above which an image is a decompression bomb)")
    _range(f"{w}: images", "max_bytes", images.max_bytes, 1, what=" bytes")
    batch = _get(d, "batch", dict, w, {})
    _only(batch, {"min_images", "links"}, f"{w}: batch")
    min_images = _get(batch, "min_images", int, f"{w}: batch", 1)
    _range(f"{w}: batch", "min_images", min_images, 0)
    links = _get(batch, "links", str, f"{w}: batch", "inside")
    if links not in LINK_POLICIES:
        raise ContractError(f"{w}: batch.links must be one of {LINK_POLICIES} (inside: a symbolic link that leads "
                            f"outside the batch folder is quarantined unread), got {links!r}")
    attrs = _get(d, "attributes", dict, w, {})
    _only(attrs, {"required", "groups"}, f"{w}: attributes")
    groups = {}
    for g, rule in (_get(attrs, "groups", dict, w, {}) or {}).items():
        rule = rule or {}
        if not isinstance(rule, dict):
            raise ContractError(f"{w}: attributes.groups.{g} must be a mapping such as {{min_share: 0.1, values: "
                                f"[a, b]}}, got {rule!r}")
        if not isinstance(rule.get("values") or [], list):
            raise ContractError(f"{w}: attributes.groups.{g}.values must be a list of allowed values, "
                                f"got {rule['values']!r}")
        _only(rule, {"min_share", "values"}, f"{w}: attributes.groups.{g}")
        share = _get(rule, "min_share", float, f"{w}: attributes.groups.{g}", 0.0)
        if not 0 <= share <= 1:
            raise ContractError(f"{w}: attributes.groups.{g}.min_share must be within 0..1, got {share}")
        groups[g] = GroupRule(share, tuple(str(v) for v in rule.get("values") or ()))
    b = _get(d, "bias", dict, w, {})
    _only(b, set(BiasRules.__dataclass_fields__), f"{w}: bias")
    bias = BiasRules(**{k: _get(b, k, type(getattr(BiasRules, k)), f"{w}: bias") for k in b})
    wb = f"{w}: bias"
    _range(wb, "reference_batches", bias.reference_batches, 0, what=" (earlier batches; 0 = no drift check)")
    _range(wb, "psi_max", bias.psi_max, 0, lo_open=True)
    _range(wb, "p_value_min", bias.p_value_min, 0, 1)
    _range(wb, "near_duplicate_bits", bias.near_duplicate_bits, 0, 63, what=" (bits of a 64-bit pHash)")
    _range(wb, "near_duplicate_max_share", bias.near_duplicate_max_share, 0, 1)
    _range(wb, "near_duplicate_max_pixel_difference", bias.near_duplicate_max_pixel_difference, 0, 255,
           what=" (grey levels: mean pixel difference that confirms a pHash match)")
    _range(wb, "near_duplicate_min_correlation", bias.near_duplicate_min_correlation, -1, 1,
           what=" (correlation of the two thumbnails that confirms a pHash match)")
    checks = _get(d, "checks", dict, w)
    for c, sev in checks.items():
        if c not in KNOWN_CHECKS:
            raise ContractError(f"{w}: checks.{c}: unknown check; known: {KNOWN_CHECKS}")
        if sev not in SEVERITIES:
            raise ContractError(f"{w}: checks.{c} must be 'block' or 'warn', got {sev!r}")
    labels = None
    if "labels" in d:
        lab = _get(d, "labels", dict, w)
        _only(lab, {"min_classes", "min_per_class"}, f"{w}: labels")
        labels = LabelRules(**{k: _get(lab, k, int, f"{w}: labels") for k in lab})
        _range(f"{w}: labels", "min_classes", labels.min_classes, 1)
        _range(f"{w}: labels", "min_per_class", labels.min_per_class, 1)
    leak = _get(d, "leakage", dict, w, {})
    _only(leak, {"near_duplicate_bits", "max_pixel_difference", "min_correlation"}, f"{w}: leakage")
    leak_bits = _get(leak, "near_duplicate_bits", int, f"{w}: leakage", None)
    if leak_bits is not None:
        _range(f"{w}: leakage", "near_duplicate_bits", leak_bits, 0, 63, what=" (bits of a 64-bit pHash)")
    leak_px = _get(leak, "max_pixel_difference", float, f"{w}: leakage", MAX_PIXEL_DIFFERENCE)
    _range(f"{w}: leakage", "max_pixel_difference", leak_px, 0, 255,
           what=" (grey levels: mean pixel difference that confirms a pHash match)")
    leak_corr = _get(leak, "min_correlation", float, f"{w}: leakage", MIN_CORRELATION)
    _range(f"{w}: leakage", "min_correlation", leak_corr, -1, 1,
           what=" (correlation of the two thumbnails that confirms a pHash match)")
    return Contract(
        name=_get(d, "contract", str, w), version=str(_get(d, "version", (str, int, float), w)),
        description=str(d.get("description", "")), manifest=dict(manifest), images=images,
        min_images=min_images, links=links,
        required_attributes=tuple(_get(attrs, "required", list, w, []) or ()), groups=groups, bias=bias,
        checks=dict(checks), labels=labels, leakage_bits=leak_bits, leakage_max_pixel_difference=leak_px,
        leakage_min_correlation=leak_corr,
        source=str(p.resolve()), digest=hashlib.sha256(text).hexdigest(), raw=d)
