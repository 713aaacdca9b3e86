"""How often does a pHash match (within the contract's bits) join two different pictures, and does the pixel
confirmation (ssl_ops.pixel_match) tell them apart from true near copies?

    .venv/bin/python bench/phash_confirm.py --out /tmp/phash-bench [--bits 4] [--threshold 16]

(a) CIFAR-10 (../shared/datasets/cifar10-jpg): every test image against every train image, pairs within
    `--bits`; how many pairs, how many the pixel measure confirms, the distribution of mean pixel
    differences, and a montage (cifar_pairs.png: confirmed pairs first, then rejected ones, each labelled
    with the difference) to look at.
(b) Faces: no face dataset is available offline (scikit-learn's LFW and Olivetti download on first use). The
    stand-in is PACS's photo/person class (../shared/datasets/pacs-64): mostly frontal, centred face photos
    (Caltech faces style, several photos of each person), i.e. aligned face crops at 64x64. Every pair of
    distinct files there is a different photograph, so every pHash pair is a false positive for "copy";
    rates with and without pixel confirmation, at `--bits` and wider (6..12 bits, where the layout-alike
    pairs of a face set show up), and a montage (faces_pairs.png).
(c) True copies: each PACS face photo re-encoded (JPEG q30/q50), brightened or darkened 15%, contrast x1.3,
    desaturated, made grey, resized down and up: the share whose pHash stays within `--bits` and the share
    of those the pixel measure confirms (it must be all).
A sweep of thresholds prints the three rates side by side (how the default was chosen).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.* as printed: python bench/phash_confirm.py

from bench.datasets import CIFAR, PACS, need  # noqa: E402
from data_contracts.contract import MAX_PIXEL_DIFFERENCE, MIN_CORRELATION
from ssl_ops.ingest.probe import THUMB, ImageLimits, gray_array, probe_image
from ssl_ops.phash import hamming, hashable, near_pairs, phash64
from ssl_ops.pixel_match import PixelMatcher, correlation, mean_pixel_difference, raw_pixel_difference, thumbnail

SWEEP = (8, 10, 12, 14, 16, 18, 20, 22, 24, 28, 32)  # mean pixel difference thresholds, correlation not required
COMBOS = ((16, -1.0), (1e9, 0.85), (12, 0.85), (16, 0.8), (16, 0.85), (16, 0.9), (20, 0.85), (20, 0.9))


def combos(verdicts) -> dict:
    """How many of these verdicts each (max difference, min correlation) pair of thresholds would confirm."""
    v = [x for x in verdicts if x.difference is not None]
    return {f"diff<={d:g},corr>={c:g}": int(sum(x.difference <= d and x.correlation >= c for x in v)) for d, c in COMBOS}


def thumbs(z: zipfile.ZipFile, names: list[str]) -> np.ndarray:
    """The 32x32 thumbnails ingestion hashes (ssl_ops.ingest.probe)."""
    return gray_array([probe_image(z.read(n), ImageLimits()).gray for n in names])


def zip_source(z: zipfile.ZipFile):
    return lambda sample_id, name: z.read(name)


def dist(v, digits: int = 1) -> dict:
    v = np.asarray(v, float)
    if not len(v):
        return {}
    return {f"p{q}": round(float(np.percentile(v, q)), digits) for q in (0, 5, 25, 50, 75, 95, 100)}


def montage(pairs: list[tuple[bytes, bytes, str]], path: Path, cols: int = 8, side: int = 64, title: str = "") -> None:
    """pairs: (image a bytes, image b bytes, label) -> a PNG grid of side-by-side pairs with their labels."""
    rows = max(1, (len(pairs) + cols - 1) // cols)
    im = Image.new("RGB", (cols * (2 * side + 8), rows * (side + 14) + 16), "white")
    dr = ImageDraw.Draw(im)
    dr.text((2, 2), title, fill="black")
    for k, (a, b, label) in enumerate(pairs):
        x, y = (k % cols) * (2 * side + 8), 16 + (k // cols) * (side + 14)
        for j, data in enumerate((a, b)):
            im.paste(Image.open(io.BytesIO(data)).convert("RGB").resize((side, side), Image.Resampling.NEAREST),
                     (x + j * side, y))
        dr.text((x, y + side), label, fill="red" if label.startswith("x") else "black")
    im.save(path)


def cifar(bits: int, threshold: float, min_corr: float, out: Path) -> dict:
    zt, zr = zipfile.ZipFile(need(CIFAR / "test.zip")), zipfile.ZipFile(need(CIFAR / "train.zip"))
    tn = sorted(n for n in zt.namelist() if n.endswith(".jpg"))
    rn = sorted(n for n in zr.namelist() if n.endswith(".jpg"))
    t0 = time.perf_counter()
    tg, rg = thumbs(zt, tn), thumbs(zr, rn)
    th, rh = phash64(tg), phash64(rg)
    tu = np.nonzero(hashable(tg.reshape(len(tg), -1).std(1)))[0]
    ru = np.nonzero(hashable(rg.reshape(len(rg), -1).std(1)))[0]
    p = near_pairs(rh[ru], bits, query=th[tu])
    hash_s = time.perf_counter() - t0
    pm = PixelMatcher({"test": zip_source(zt), "train": zip_source(zr)}, threshold, min_corr)
    t0 = time.perf_counter()
    rows, vs = [], []
    for q, i, d in p:
        a, b = tn[tu[q]], rn[ru[i]]
        v = pm.verdict(("test", "", a), ("train", "", b))
        vs.append(v)
        rows.append({"test": a, "train": b, "bits": int(d), **v.fields(), "confirmed": v.confirmed})
    confirm_s = time.perf_counter() - t0
    conf = [r for r in rows if r["confirmed"]]
    rej = sorted((r for r in rows if not r["confirmed"]), key=lambda r: r["difference"])
    show = sorted(conf, key=lambda r: r["difference"])[::max(1, len(conf) // 48)][:48] + rej[:48]
    montage([(zt.read(r["test"]), zr.read(r["train"]),
              f"{'x ' if not r['confirmed'] else ''}{r['difference']:.1f} c{r['correlation']:.2f} {r['bits']}b") for r in show],
            out / "cifar_pairs.png",
            title=f"CIFAR-10 test|train pHash <= {bits} bits: {len(conf)} confirmed (black), {len(rej)} rejected "
                  f"(red, x) at mean pixel difference <= {threshold:g} and correlation >= {min_corr:g}")
    diffs = [r["difference"] for r in rows]
    return {"test_images": len(tn), "train_images": len(rn), "pairs_within_bits": len(rows),
            "test_images_matched": len({r["test"] for r in rows}), "confirmed": len(conf), "rejected": len(rej),
            "difference": dist(diffs), "raw_difference": dist([r["raw"] for r in rows]),
            "correlation": dist([r["correlation"] for r in rows], 3), "confirmed_by_thresholds": combos(vs),
            "sweep_confirmed_share": {t: round(float(np.mean(np.array(diffs) <= t)), 3) for t in SWEEP} if diffs else {},
            "rejected_pairs": rej, "seconds": {"thumbnails_and_hash": round(hash_s, 1),
                                               "confirm": round(confirm_s, 2)},
            "images_read_for_confirmation": pm.images_read}


def faces(bits: int, threshold: float, min_corr: float, out: Path) -> dict:
    z = zipfile.ZipFile(need(PACS))
    names = sorted(n for n in z.namelist() if n.startswith("photo/person/") and n.endswith(".jpg"))
    g = thumbs(z, names)
    h = phash64(g)
    shas = {__import__("hashlib").sha256(z.read(n)).hexdigest() for n in names}
    n = len(names)
    all_pairs = n * (n - 1) // 2
    pm = PixelMatcher({"pacs": zip_source(z)}, threshold, min_corr)
    res = {"images": n, "distinct_files_by_sha256": len(shas), "pairs_of_images": all_pairs, "by_bits": {}}
    wide = near_pairs(h, 12)
    verdicts = {}
    for i, j, d in wide:
        verdicts[(int(i), int(j))] = (int(d), pm.verdict(("pacs", "", names[i]), ("pacs", "", names[j])))
    for b in sorted({bits, 4, 6, 8, 10, 12}):
        sel = [(k, v) for k, (d, v) in verdicts.items() if d <= b]
        conf = [k for k, v in sel if v.confirmed]
        res["by_bits"][b] = {"phash_pairs": len(sel), "phash_false_positive_rate": len(sel) / all_pairs,
                             "images_in_a_pair": len({x for k, _ in sel for x in k}),
                             "confirmed_by_pixels": len(conf), "confirmed_rate": len(conf) / all_pairs,
                             "difference": dist([v.difference for _, v in sel]),
                             "raw_difference": dist([v.raw for _, v in sel]),
                             "correlation": dist([v.correlation for _, v in sel], 3),
                             "confirmed_by_thresholds": combos([v for _, v in sel]),
                             "sweep_confirmed": {t: int(sum(v.difference <= t for _, v in sel)) for t in SWEEP}}
    res["within_bits_pairs"] = [{"a": names[i], "b": names[j], "bits": d, **v.fields(), "confirmed": v.confirmed} for (i, j), (d, v) in verdicts.items() if d <= bits]
    order = sorted(verdicts.items(), key=lambda kv: kv[1][1].difference)
    show = order[:64] + [kv for kv in order[64:] if kv[1][0] <= 6][:32]
    montage([(z.read(names[i]), z.read(names[j]),
              f"{'x ' if not v.confirmed else ''}{v.difference:.1f} c{v.correlation:.2f} {d}b") for (i, j), (d, v) in show],
            out / "faces_pairs.png",
            title=f"PACS photo/person pairs within 12 pHash bits, lowest mean pixel difference first; red x: "
                  f"rejected at difference <= {threshold:g}, correlation >= {min_corr:g}")
    return res


def pacs_within(bits: int, threshold: float, min_corr: float, out: Path) -> dict:
    """All of PACS as one batch (what bias_report's near-duplicate clusters see): pHash pairs and confirmed ones."""
    z = zipfile.ZipFile(need(PACS))
    names = sorted(n for n in z.namelist() if n.endswith(".jpg"))
    g = thumbs(z, names)
    use = np.nonzero(hashable(g.reshape(len(g), -1).std(1)))[0]
    p = near_pairs(phash64(g[use]), bits)
    pm = PixelMatcher({"pacs": zip_source(z)}, threshold, min_corr)
    v = [pm.verdict(("pacs", "", names[use[i]]), ("pacs", "", names[use[j]])) for i, j, _ in p]
    same_class = [names[use[i]].split("/")[:2] == names[use[j]].split("/")[:2] for i, j, _ in p]
    sketch = [names[use[i]].startswith("sketch/") for i, _, _ in p]
    conf = sorted((x.correlation, names[use[i]], names[use[j]], x) for x, (i, j, _) in zip(v, p) if x.confirmed)
    shown = conf[::max(1, len(conf) // 64)][:64]
    montage([(z.read(a), z.read(b), f"{x.difference:.1f} c{x.correlation:.2f}") for _, a, b, x in shown],
            out / "pacs_confirmed.png", title=f"PACS pairs within {bits} bits confirmed by the pixels (a sample, lowest "
                                              f"correlation first)")
    return {"images": len(names), "phash_pairs": len(p), "confirmed": int(sum(x.confirmed for x in v)),
            "sketch_pairs": int(sum(sketch)), "sketch_pairs_confirmed": int(sum(x.confirmed and s for x, s in zip(v, sketch))),
            "confirmed_by_thresholds": combos(v),
            "sketch_confirmed_by_thresholds": combos([x for x, s in zip(v, sketch) if s]),
            "confirmed_same_domain_and_class": int(sum(x.confirmed and s for x, s in zip(v, same_class))),
            "rejected_same_domain_and_class": int(sum(not x.confirmed and s for x, s in zip(v, same_class))),
            "difference": dist([x.difference for x in v]), "correlation": dist([x.correlation for x in v], 3)}


def true_copies(bits: int, threshold: float, min_corr: float) -> dict:
    z = zipfile.ZipFile(need(PACS))
    names = sorted(n for n in z.namelist() if n.startswith("photo/person/") and n.endswith(".jpg"))

    def enc(im, q=90):
        b = io.BytesIO()
        im.save(b, "JPEG", quality=q)
        return b.getvalue()

    edits = {"jpeg_q50": lambda im: enc(im, 50), "jpeg_q30": lambda im: enc(im, 30),
             "brighter_15pct": lambda im: enc(ImageEnhance.Brightness(im).enhance(1.15)),
             "darker_15pct": lambda im: enc(ImageEnhance.Brightness(im).enhance(0.85)),
             "contrast_x1.3": lambda im: enc(ImageEnhance.Contrast(im).enhance(1.3)),
             "saturation_x0.5": lambda im: enc(ImageEnhance.Color(im).enhance(0.5)),
             "grey": lambda im: enc(im.convert("L")),
             "resized_48_and_back": lambda im: enc(im.resize((48, 48)).resize((64, 64))),
             "upscaled_128": lambda im: enc(im.resize((128, 128), Image.Resampling.BICUBIC))}
    origs = [z.read(n) for n in names]
    ha = phash64(gray_array([probe_image(x, ImageLimits()).gray for x in origs]))
    out = {}
    for k, f in edits.items():
        edited = [f(Image.open(io.BytesIO(x)).convert("RGB")) for x in origs]
        d = hamming(ha, phash64(gray_array([probe_image(e, ImageLimits()).gray for e in edited])))
        within = d <= bits
        ta = [thumbnail(x) for x in origs]
        tb = [thumbnail(e) for e in edited]
        ok = np.nonzero(within)[0]
        diff = np.array([mean_pixel_difference(ta[i], tb[i]) for i in ok])
        raw = np.array([raw_pixel_difference(ta[i], tb[i]) for i in ok])
        cor = np.array([correlation(ta[i], tb[i]) for i in ok])
        out[k] = {"images": len(names), "phash_within_bits": int(within.sum()),
                  "confirmed": int(((diff <= threshold) & (cor >= min_corr)).sum()),
                  "difference_max": round(float(diff.max()), 1), "raw_difference_max": round(float(raw.max()), 1),
                  "correlation_min": round(float(cor.min()), 3)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the montages and phash_confirm.json")
    ap.add_argument("--bits", type=int, default=4, help="pHash distance of a match (the contracts' default: 4)")
    ap.add_argument("--threshold", type=float, default=MAX_PIXEL_DIFFERENCE,
                    help="mean pixel difference at or below which a match is confirmed")
    ap.add_argument("--min-correlation", type=float, default=MIN_CORRELATION,
                    help="correlation at or above which a match is confirmed (with the difference)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    assert THUMB == 32
    t, r = args.threshold, args.min_correlation
    res = {"bits": args.bits, "threshold": t, "min_correlation": r, "cifar10": cifar(args.bits, t, r, args.out),
           "faces_pacs_photo_person": faces(args.bits, t, r, args.out),
           "true_copies_pacs_photo_person": true_copies(args.bits, t, r),
           "pacs_as_one_batch": pacs_within(args.bits, t, r, args.out)}
    (args.out / "phash_confirm.json").write_text(json.dumps(res, indent=2, default=str))
    c, f = res["cifar10"], res["faces_pacs_photo_person"]
    print(f"CIFAR-10 test x train, pHash <= {args.bits} bits: {c['pairs_within_bits']} pairs "
          f"({c['test_images_matched']} test images); confirmed {c['confirmed']}, rejected {c['rejected']}; "
          f"mean pixel difference {c['difference']}; raw {c['raw_difference']}")
    print(f"  correlation {c['correlation']}")
    print(f"  confirmed by thresholds: {c['confirmed_by_thresholds']}")
    print(f"Faces stand-in (PACS photo/person, {f['images']} images, {f['pairs_of_images']} pairs, all different photos):")
    for b, r in f["by_bits"].items():
        print(f"  <= {b:2d} bits: pHash pairs {r['phash_pairs']:4d} (rate {r['phash_false_positive_rate']:.2e}), "
              f"confirmed by pixels {r['confirmed_by_pixels']:3d} (rate {r['confirmed_rate']:.2e}); "
              f"difference {r['difference']}; correlation {r['correlation']}; confirmed by thresholds "
              f"{r['confirmed_by_thresholds']}")
    print("True copies (PACS face photos edited):")
    for k, r in res["true_copies_pacs_photo_person"].items():
        print(f"  {k:20s} pHash within {args.bits}: {r['phash_within_bits']}/{r['images']}, confirmed "
              f"{r['confirmed']}/{r['phash_within_bits']} (max difference {r['difference_max']}, raw "
              f"{r['raw_difference_max']}; min correlation {r['correlation_min']})")
    w = res["pacs_as_one_batch"]
    print(f"PACS as one batch ({w['images']} images): {w['phash_pairs']} pHash pairs within {args.bits} bits, "
          f"{w['confirmed']} confirmed ({w['confirmed_same_domain_and_class']} of them same domain and class; "
          f"{w['rejected_same_domain_and_class']} rejected pairs are); sketch pairs {w['sketch_pairs']}, confirmed "
          f"{w['sketch_pairs_confirmed']}; difference {w['difference']}; correlation {w['correlation']}")
    print(f"  confirmed by thresholds: {w['confirmed_by_thresholds']}; sketches: {w['sketch_confirmed_by_thresholds']}")
    print(f"montages: {args.out / 'cifar_pairs.png'}, {args.out / 'faces_pairs.png'}, {args.out / 'pacs_confirmed.png'}; "
          f"all figures: "
          f"{args.out / 'phash_confirm.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
