"""The comparison dict of ssl_ops.review.compare rendered for a terminal and as one self-contained HTML page.
Pure: a dict in, a string out; every value from the data or the registry goes through ssl_ops.escape.

    print(render_text(cmp))                        # through ssl_ops.escape.terminal
    Path("review.html").write_text(render_html(cmp, plots=[("title", png_bytes)]))  # through html_text
"""

from __future__ import annotations

import base64
import io

from ssl_ops.escape import html_text, terminal
from ssl_ops.review.card import WORST_GROUP_GAP
from ssl_ops.review.compare import METRICS
from ssl_ops.review.gate import GateConfig


# ---------------------------------------------------------------------------------------------------- text
def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _ci(ci) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else ""


def _state(review: dict | None) -> str:
    if not review:
        return "none recorded"
    s = str(review.get("status"))
    if review.get("reviewer"):
        s += f" by {review['reviewer']}"
    if review.get("time"):
        s += f" at {review['time']}"
    if review.get("forced"):
        s += " (forced past a failed gate)"
    if review.get("reason"):
        s += f": {review['reason']}"
    return s


def _who(cmp: dict, key: str) -> str:
    v = cmp.get(key) or {}
    return f"version {v.get('version')} ({'champion' if key == 'champion' else v.get('role') or 'version'})"


def _gate_checks(gate: dict | None) -> list[tuple[bool, str, str]]:
    return [(bool(c.get("passed")), str(c.get("name")), str(c.get("detail", ""))) for c in (gate or {}).get("checks", [])]


def _bias_lines(b: dict) -> list[str]:
    """Plain-text lines on one batch's bias findings; data values NOT yet escaped (the caller escapes)."""
    if not b["found"]:
        return ["no bias report in this home (reports/<batch>/bias.json)"]
    out = []
    for g in b["groups"]:
        shares = ", ".join(f"{v}={s:.1%}" for v, s in g["shares"].items())
        under = f"; under {g['min_share']:.0%}: {', '.join(g['under'])}" if g["under"] else ""
        out.append(f"group {g['attribute']}: {shares}{under}")
    for u in b.get("unchecked") or []:  # attributes of the batch that the contract does not declare
        more = f" (+{u['other_values']} more values, {u['other_share']:.1%})" if u.get("other_values") else ""
        out.append(f"attribute {u['attribute']}: " + ", ".join(f"{v}={s:.1%}" for v, s in u["shares"].items())
                   + f"{more}; not checked: declare it in the contract to enforce a minimum share")
    if not b["drift_measured"]:
        out.append(next((n for n in b["notes"] if n.startswith("drift")), "drift: not measured"))
    elif b["drifted"]:
        out.append("drift: " + "; ".join(f"{d['feature']} psi={d['psi']:.3f} p={d['p_value']:.2g}" for d in b["drifted"]))
    else:
        out.append(f"drift: none in {b['drift_features']} feature(s)")
    nd = b["near_duplicates"]
    out.append(f"near duplicates: {nd['images_in_clusters']} of {b['images']} images ({(nd['share'] or 0):.1%}) in "
               f"{nd['cluster_count']} cluster(s) at <= {nd['max_bits']} bits; {nd['cross_batch_count']} near copies "
               "of earlier batches")
    return out


def _wrap(text: str, width: int = 110) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def render_text(cmp: dict) -> str:
    """For a terminal: every value that comes from the data or the registry goes through `terminal()`."""
    t = terminal
    L: list[str] = []
    s, c = cmp["subject"], cmp["champion"]
    L.append(f"model {t(cmp['model'])}" + (f" (home {t(cmp['home'])})" if cmp.get("home") else ""))
    if s is None and c is None:
        L.append("no candidate and no champion: nothing to review")
    elif s is None:
        L.append(f"no candidate: no version is waiting for review; the champion is version {t(c['version'])}")
    else:
        L.append(f"reviewing version {t(s['version'])} ({t(s.get('role') or 'version')}) beside "
                 + (f"the champion, version {t(c['version'])}" if c else "no champion (none approved yet)"))
    main = s or c
    if main is not None:
        L.append(f"  trained on {t(', '.join(main.get('batches') or []) or '?')} ({t(main.get('method') or '?')}, "
                 f"{t(main.get('backbone') or '?')}); MLflow run {t(main.get('run_id'))}")
    if cmp["probes"]:
        sp = cmp.get("split") or {}
        L += ["", f"PROBES (accuracy %, 95% interval; {sp.get('n_test', '?')} test images, split seed "
                  f"{t(sp.get('seed', '?'))})"]
        fr = list(cmp["probes"][0]["label_fractions"])
        head = f"  {'encoder':<44}" + "".join(f"{lab:>22}" for _, lab in METRICS) + \
               "".join(f"{'lin@' + format(float(f) * 100, 'g') + '%':>14}" for f in fr)
        L.append(head)
        for r in cmp["probes"]:
            cells = "".join(f"{_pct(r[m]) + ' ' + _ci(r[m + '_ci']):>22}" for m, _ in METRICS)
            cells += "".join(f"{_pct(r['label_fractions'].get(f, {}).get('mean')):>14}" for f in fr)
            L.append(f"  {t(r['label'])[:44]:<44}{cells}")
        for m, d in cmp["deltas"].items():
            L.append(f"  {m}: {100 * d['delta']:+.1f} points against the champion (paired 95% interval "
                     f"[{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}])"
                     + (f": {d['verdict']}" if d.get("verdict") else ""))
        if cmp.get("interval_note"):
            L += [f"  {line}" for line in _wrap(cmp["interval_note"])]
    if cmp["groups"]:
        min_n = (cmp.get("gate_config") or {}).get("min_group_size", GateConfig().min_group_size)
        L += ["", f"PER-GROUP ACCURACY (linear probe, %; groups under {min_n} test images are too small to judge)"]
        for g in cmp["groups"]:
            L.append(f"  {t(g['column'])}: worst group {t(g['worst_group'])}, worst-group gap "
                     f"{_pct(g['worst_group_gap'])} points"
                     + (f" (champion: worst {t(g['champion_worst_group'])}, gap {_pct(g['champion_worst_group_gap'])})"
                        if g["champion_worst_group_gap"] is not None else ""))
            for v in g["values"]:
                L.append(f"    {t(v['value']):<30} n={v['n']:<5} {_pct(v['accuracy']):>6}"
                         f"  raw pixels {_pct(v.get('raw_pixels')):>5}  random init {_pct(v.get('random_init')):>5}"
                         + (f"  champion {_pct(v['champion_accuracy']):>6}" if v["champion_accuracy"] is not None else "")
                         + (f"  {100 * v['delta']:+.1f} [{100 * v['ci'][0]:+.1f}, {100 * v['ci'][1]:+.1f}]"
                            if v.get("ci") else "")
                         + (f"  {v['judgement']}" if v.get("judgement") else ""))
        L += [f"  {line}" for line in _wrap(f"The {WORST_GROUP_GAP}.")]
    if cmp["health"]:
        L += ["", "HEALTH (eval images)"]
        for who, h in cmp["health"].items():
            if h:
                L.append(f"  {t(_who(cmp, who)):<24} embedding std {h['embedding_std']:.3f}, effective rank {h['effective_rank']:.1f}, "
                         f"uniformity {h['uniformity']:.3f}, alignment {h['alignment']:.3f}")
    if s is not None:
        g = cmp["gate"]
        L += ["", "GATE " + ("(none recorded: registration did not finish)" if g is None else
                             f"{'PASSED' if g.get('passed') else 'FAILED'} against the {t(g.get('against'))} on "
                             f"{t(g.get('metric'))}")]
        checks = _gate_checks(g)
        L += [f"  {'pass' if ok else 'FAIL'} {t(name)}: {t(detail)}" for ok, name, detail in checks]
        if g is not None and not checks:
            L.append(f"  {t(g.get('summary'))}")
        L += ["", f"REVIEW STATE  {t(_state(cmp['review']))}"]
    if cmp["bias"]:
        L += ["", "BIAS FINDINGS of the batches it trained on that the champion did not"]
        for b in cmp["bias"]:
            flagged = [k for k, v in (b.get("flags") or {}).items() if v]
            L.append(f"  batch {t(b['batch'])}" + (f" ({b['images']} images; flagged: {', '.join(flagged) or 'none'})"
                                                  if b["found"] else ""))
            L += [f"    {t(x)}" for x in _bias_lines(b)]
    elif s is not None and c is not None:
        L += ["", "BIAS FINDINGS: no new batches (it trained on no batch the champion did not)"]
    if cmp["notes"]:
        L += [""] + [f"note: {t(n)}" for n in cmp["notes"]]
    if cmp["commands"]:
        L += ["", "NEXT (edit the reason; run exactly as shown)"]
        L += [f"  {k:<9} {t(v)}" for k, v in cmp["commands"].items()]
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------------------------------- HTML
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;
color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d7dbe3;padding-bottom:4px}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #d7dbe3;padding:4px 8px;text-align:right}
th{background:#f1f3f7}td.l,th.l{text-align:left}.ci{color:#6b7385;font-size:12px}
.pass{color:#116329;font-weight:600}.fail{color:#b3261e;font-weight:600}.sub{color:#5a6172}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;background:#e8ecf4;margin-left:4px}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:6px 0}
pre{background:#f6f8fa;padding:8px 10px;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plots figure{margin:0}.plots img{max-width:560px;border:1px solid #d7dbe3}
figcaption{font-size:12px;color:#5a6172}
"""


def figure_png(fig) -> bytes:
    """A matplotlib Figure (ssl_ops.review.plots) as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _h_pct(x, ci=None) -> str:
    return _pct(x) + (f' <span class="ci">{_ci(ci)}</span>' if ci else "")


def render_html(cmp: dict, plots: list[tuple[str, bytes]] = ()) -> str:
    """One self-contained page: inline CSS, plots as data: URIs, no script; a Content-Security-Policy that
    allows nothing else. Every string from the data or the registry goes through `html_text`."""
    e = html_text
    s, c = cmp["subject"], cmp["champion"]
    P: list[str] = []
    title = f"Review: {cmp['model']}" + (f" version {s['version']}" if s else "")
    if s is None and c is None:
        lead = "No candidate and no champion: nothing to review."
    elif s is None:
        lead = f"No candidate: no version is waiting for review. The champion is version {e(c['version'])}."
    else:
        lead = (f"Version {e(s['version'])} <span class=badge>{e(s.get('role') or 'version')}</span> beside "
                + (f"the champion, version {e(c['version'])}." if c else "no champion (none approved yet)."))
    P.append(f"<h1>{e(title)}</h1><p>{lead}</p>")
    main = s or c
    if main is not None:
        P.append(f"<p class=sub>Trained on {e(', '.join(main.get('batches') or []) or '?')} &middot; "
                 f"{e(main.get('method') or '?')} / {e(main.get('backbone') or '?')} &middot; MLflow run "
                 f"<code>{e(main.get('run_id'))}</code>" + (f" &middot; home <code>{e(cmp['home'])}</code>"
                                                             if cmp.get("home") else "") + "</p>")
    if s is not None:
        g = cmp["gate"]
        verdict = ("<span class=fail>none recorded</span>" if g is None else
                   f"<span class={'pass' if g.get('passed') else 'fail'}>{'PASSED' if g.get('passed') else 'FAILED'}"
                   f"</span> against the {e(g.get('against'))} on <code>{e(g.get('metric'))}</code>")
        P.append(f"<h2>Gate: {verdict}</h2>")
        checks = _gate_checks(g)
        if checks:
            P.append("<table><tr><th class=l>check</th><th class=l>result</th><th class=l>detail</th></tr>" + "".join(
                f"<tr><td class=l><code>{e(n)}</code></td><td class=l><span class={'pass' if ok else 'fail'}>"
                f"{'pass' if ok else 'FAIL'}</span></td><td class=l>{e(d)}</td></tr>" for ok, n, d in checks) + "</table>")
        elif g is not None:
            P.append(f"<p>{e(g.get('summary'))}</p>")
        P.append(f"<p><b>Review state:</b> {e(_state(cmp['review']))}</p>")
    if cmp["probes"]:
        sp = cmp.get("split") or {}
        fr = list(cmp["probes"][0]["label_fractions"])
        P.append(f"<h2>Probes</h2><p class=sub>Accuracy %, 95% bootstrap interval; {e(sp.get('n_test', '?'))} test "
                 f"images, probe split seed {e(sp.get('seed', '?'))}.</p><table><tr><th class=l>encoder</th>"
                 + "".join(f"<th>{lab}</th>" for _, lab in METRICS)
                 + "".join(f"<th>linear, {float(f) * 100:g}% labels</th>" for f in fr) + "</tr>")
        for r in cmp["probes"]:
            P.append(f"<tr><td class=l>{e(r['label'])}</td>"
                     + "".join(f"<td>{_h_pct(r[m], r[m + '_ci'])}</td>" for m, _ in METRICS)
                     + "".join(f"<td>{_pct(r['label_fractions'].get(f, {}).get('mean'))}"
                               + (f" <span class=ci>&plusmn; {_pct(r['label_fractions'][f]['std'])}</span>"
                                  if r["label_fractions"].get(f, {}).get("draws", 1) > 1 else "") + "</td>" for f in fr)
                     + "</tr>")
        P.append("</table>")
        if cmp["deltas"]:
            P.append("<p>Against the champion on the same split (paired 95% interval): " + "; ".join(
                f"<code>{m}</code> {100 * d['delta']:+.1f} points [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"
                + (f" ({e(d['verdict'])})" if d.get("verdict") else "") for m, d in cmp["deltas"].items()) + "</p>")
        if cmp.get("interval_note"):
            P.append(f"<p class=sub>{e(cmp['interval_note'])}</p>")
    if cmp["groups"]:
        min_n = (cmp.get("gate_config") or {}).get("min_group_size", GateConfig().min_group_size)
        P.append(f"<h2>Per-group accuracy (linear probe)</h2><p class=sub>The {e(WORST_GROUP_GAP)}. Groups with fewer "
                 f"than {min_n} test images are too small to judge.</p>")
        for g in cmp["groups"]:
            has_c = any(v["champion_accuracy"] is not None for v in g["values"])
            has_d = any(v.get("ci") for v in g["values"])
            P.append(f"<p><b>{e(g['column'])}</b>: worst group <code>{e(g['worst_group'])}</code>, worst-group gap "
                     f"{_pct(g['worst_group_gap'])} points" + (f" (champion: <code>{e(g['champion_worst_group'])}</code>,"
                                                             f" {_pct(g['champion_worst_group_gap'])})"
                                                             if g["champion_worst_group_gap"] is not None else "")
                     + "</p><table><tr><th class=l>value</th><th>n</th><th>this version</th><th>raw pixels</th>"
                     "<th>random init</th>" + ("<th>champion</th>" if has_c else "")
                     + ("<th>difference [95% interval]</th>" if has_d else "") + "<th class=l>judged</th></tr>"
                     + "".join(f"<tr><td class=l>{e(v['value'])}</td><td>{v['n']}</td><td>{_pct(v['accuracy'])}</td>"
                               f"<td>{_pct(v.get('raw_pixels'))}</td><td>{_pct(v.get('random_init'))}</td>"
                               + (f"<td>{_pct(v['champion_accuracy'])}</td>" if has_c else "")
                               + ((f"<td>{100 * v['delta']:+.1f} <span class=ci>[{100 * v['ci'][0]:+.1f}, "
                                   f"{100 * v['ci'][1]:+.1f}]</span></td>" if v.get("ci") else "<td>-</td>")
                                  if has_d else "")
                               + f"<td class=l>{e(v.get('judgement') or '-')}</td></tr>"
                               for v in g["values"]) + "</table>")
    if cmp["health"]:
        P.append("<h2>Health (eval images)</h2><table><tr><th class=l></th><th>embedding std (&times;&radic;D)</th>"
                 "<th>effective rank</th><th>uniformity</th><th>alignment</th></tr>" + "".join(
                     f"<tr><td class=l>{e(_who(cmp, who))}</td><td>{h['embedding_std']:.3f}</td><td>{h['effective_rank']:.1f}</td>"
                     f"<td>{h['uniformity']:.3f}</td><td>{h['alignment']:.3f}</td></tr>"
                     for who, h in cmp["health"].items() if h) + "</table>")
    if cmp["bias"]:
        P.append("<h2>Bias findings of the new batches</h2><p class=sub>Batches this version trained on that the "
                 "champion did not.</p>")
        for b in cmp["bias"]:
            flagged = [k for k, v in (b.get("flags") or {}).items() if v]
            P.append(f"<h3>batch <code>{e(b['batch'])}</code>" + (f" <span class=badge>{b['images']} images</span>"
                                                                  + "".join(f" <span class=badge>flagged: {e(k)}</span>"
                                                                            for k in flagged) if b["found"] else "")
                     + "</h3>")
            if b["found"]:
                for g in b["groups"]:
                    P.append(f"<table><tr><th class=l>{e(g['attribute'])}</th><th>images</th><th>share</th>"
                             f"<th>min {g['min_share']:.0%}</th></tr>" + "".join(
                                 f"<tr><td class=l>{e(v)}</td><td>{g['counts'].get(v, 0)}</td><td>{sh:.1%}</td><td>"
                                 f"{'<span class=fail>under</span>' if v in g['under'] else 'ok'}</td></tr>"
                                 for v, sh in g["shares"].items()) + "</table>")
            P.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in _bias_lines(b)[len(b.get('groups', [])):]) + "</ul>")
    elif s is not None and c is not None:
        P.append("<h2>Bias findings</h2><p>No new batches: it trained on no batch the champion did not.</p>")
    for n in cmp["notes"]:
        P.append(f"<p class=note>{e(n)}</p>")
    if cmp["commands"]:
        P.append("<h2>Next</h2><p class=sub>Edit the reason; run exactly as shown.</p>"
                 + "".join(f"<pre>{e(v)}</pre>" for v in cmp["commands"].values()))
    if plots:
        P.append("<h2>Plots</h2><div class=plots>" + "".join(
            f"<figure><img alt=\"{e(cap)}\" src=\"data:image/png;base64,{base64.b64encode(png).decode('ascii')}\">"
            f"<figcaption>{e(cap)}</figcaption></figure>" for cap, png in plots) + "</div>")
    if cmp["history"]:
        P.append("<h2>Alias history (latest 10)</h2><table><tr><th class=l>time</th><th class=l>alias</th>"
                 "<th class=l>from</th><th class=l>to</th><th class=l>action</th><th class=l>reviewer</th>"
                 "<th class=l>reason</th></tr>" + "".join(
                     "<tr>" + "".join(f"<td class=l>{e(h.get(k) if h.get(k) is not None else '-')}</td>"
                                      for k in ("time", "alias", "from_version", "to_version", "action", "reviewer",
                                                "reason")) + "</tr>" for h in cmp["history"]) + "</table>")
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">"
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(P) + "\n</body></html>\n")
