"""Sidecar attributes of a batch: an optional `metadata.csv` or `metadata.jsonl` keyed by relative path.

CSV: a header row with a `path` column plus one column per attribute (e.g. domain, site, device).
JSONL: one object per line with a `path` key. Paths are relative to the batch folder, `/`-separated;
they are matched after Unicode NFC normalisation (macOS writes NFD names).
Structural problems (no `path` column, a path listed twice, bad JSON, both files present) raise
`MetadataError` naming the file and line; rows without a file and files without a row are reported.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from ssl_ops.ingest.links import link_outside_batch

SIDECARS = ("metadata.csv", "metadata.jsonl")
_ATTR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class MetadataError(ValueError):
    """A sidecar metadata file that cannot be used as it is; the message says what to fix."""


@dataclass
class Sidecar:
    source: str | None  # the file name read, or None when the batch has no sidecar
    attributes: list[str]  # attribute names (columns other than path), in file order
    rows: dict[str, dict[str, str | None]] = field(default_factory=dict)  # normalised path -> attributes

    def key_of(self, rel: str) -> str | None:
        """The row of the file at relative path `rel`: the row with its exact (normalised) path, else the row whose
        path matches once surrounding blanks are trimmed (spreadsheet padding), else None. A file whose name
        itself begins or ends with blanks is found by its exact path first."""
        k = normalise_path(rel)
        if k in self.rows:
            return k
        if not hasattr(self, "_trimmed"):
            self._trimmed = {}
            for key in self.rows:
                self._trimmed.setdefault(normalise_path(key.strip()), key)
        return self._trimmed.get(k.strip())

    def attributes_of(self, rel: str) -> dict[str, str | None]:
        k = self.key_of(rel)
        return self.rows[k] if k is not None else {}


def normalise_path(p: str) -> str:
    """A sidecar path as a key: NFC, '/'-separated, with `.`, `..` and doubled separators resolved
    (`./a.jpg`, `sub/../a.jpg` -> `a.jpg`). A path that leads outside the folder (`../x`, `/etc/passwd`) keeps
    its form, matches no file, and is reported as a metadata row without a file."""
    p = unicodedata.normalize("NFC", p.replace("\\", "/"))
    if p.strip() != p or not p:  # names with surrounding blanks are matched exactly (see Sidecar.key_of)
        return p
    n = posixpath.normpath(p)
    return n if n != "." else p


def _check_names(names: list[str], where: Path) -> list[str]:
    if "path" not in names:
        raise MetadataError(f"{where}: no 'path' column; found columns {names}. Add a 'path' column with each "
                            "file's path relative to the batch folder.")
    attrs = [n for n in names if n != "path"]
    bad = [n for n in attrs if not _ATTR_NAME.match(n or "")]
    if bad:
        raise MetadataError(f"{where}: attribute names must be identifiers (letters, digits, _): {bad}")
    if len(set(attrs)) != len(attrs):
        raise MetadataError(f"{where}: repeated column names in {names}")
    return attrs


def _add(rows: dict, path: str | None, values: dict, where: Path, line: int) -> None:
    if not path:
        raise MetadataError(f"{where}:{line}: empty path")
    key = normalise_path(str(path))
    if key in rows:
        raise MetadataError(f"{where}:{line}: path {key!r} is listed twice")
    rows[key] = values


def _clean(v) -> str | None:
    """An attribute value as text: None and blanks are missing; JSON true/false/numbers/objects as JSON."""
    if v is None:
        return None
    s = v.strip() if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return s or None


def load_sidecar(batch_dir: Path, names: tuple[str, ...] = SIDECARS, links: str = "inside") -> Sidecar:
    """links: the landing policy for symbolic links (ssl_ops.ingest.scan.link_outside_batch): under `inside`, a
    sidecar that is a link leading outside the batch folder is refused unread."""
    present = [n for n in names if (batch_dir / n).is_file() or (batch_dir / n).is_symlink()]
    if len(present) > 1:
        raise MetadataError(f"{batch_dir}: both {present} present; keep one")
    if not present:
        return Sidecar(None, [])
    where = batch_dir / present[0]
    if where.is_symlink():
        target = os.path.realpath(where)
        if links == "inside" and link_outside_batch(os.path.realpath(batch_dir), str(where)) is not None:
            raise MetadataError(f"{where}: a symbolic link that leads outside the batch folder; it was not read. "
                                "Copy the file into the batch folder instead.")
        if not os.path.isfile(target):
            raise MetadataError(f"{where}: a symbolic link to something that is not a file ({target})")
    try:
        text = where.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MetadataError(f"{where}: not UTF-8 (byte {e.start}); save it as UTF-8 (in Excel: CSV UTF-8)") from None
    rows: dict[str, dict[str, str | None]] = {}
    if where.suffix == ".csv":
        # strict: a quote left open (which would swallow the rest of the file into one field) is an error
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            header = [h.strip() for h in next(reader, [])]
            attrs = _check_names(header, where)
            for values in reader:
                i = reader.line_num
                if not any(values):
                    continue  # blank lines and spreadsheet rows of empty cells
                if len(values) > len(header):
                    raise MetadataError(f"{where}:{i}: {len(values)} values for {len(header)} columns")
                r = dict(zip(header, values))
                _add(rows, r.get("path") or "", {a: _clean(r.get(a)) for a in attrs}, where, i)
        except csv.Error as e:
            # the usual cause of an over-long field is an unbalanced quote: the rest of the file reads as one field
            hint = (f" A field is longer than {csv.field_size_limit()} characters from line {reader.line_num} on: "
                    "look for an unbalanced double quote (\") there; attribute values are short labels."
                    if "field limit" in str(e) else
                    " A double quote (\") opened a field that never closes: look for an unbalanced quote."
                    if "end of data" in str(e) else "")
            raise MetadataError(f"{where}:{reader.line_num}: not a readable CSV row ({e}).{hint} Fix the file and "
                                "run the batch again.") from None
        return Sidecar(present[0], attrs, rows)
    attrs: list[str] = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise MetadataError(f"{where}:{i}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise MetadataError(f"{where}:{i}: each line must be a JSON object")
        for k in obj:
            if k != "path" and k not in attrs:
                attrs.append(k)
        path = obj.get("path")
        _add(rows, path if isinstance(path, str) else None,
             {k: _clean(v) for k, v in obj.items() if k != "path"}, where, i)
    _check_names(["path", *attrs] if rows else ["path"], where)
    for r in rows.values():
        for a in attrs:
            r.setdefault(a, None)
    return Sidecar(present[0], attrs, rows)
