"""`sslpipe review`, `approve`, `reject`, `rollback`: a person decides before a model goes live.

    sslpipe review [MODEL] [--home DIR] [--config FILE] [--version V] [--json] [--html FILE]
    sslpipe approve MODEL@VERSION --reason TEXT [--reviewer NAME] [--force] [--home DIR] [--config FILE]
    sslpipe reject MODEL@VERSION --reason TEXT [--reviewer NAME] [--home DIR] [--config FILE]
    sslpipe rollback MODEL [--to VERSION] --reason TEXT [--reviewer NAME] [--home DIR] [--config FILE]

Exit status: 0 done (review: shown, also when there is no candidate); 1 refused because of the registry's state
(nothing changed; the message says why); 2 bad arguments (unknown model or version, bad reviewer name, empty
reason, no MLflow store in the home). Argument parsing and printing only: the work is in assets/review.py,
ssl_ops/review/compare.py (the dict) and ssl_ops/review/render.py (its text and HTML).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import shlex
import sys
from pathlib import Path

from ssl_ops.escape import terminal

APPROVE_REASON = "reviewed: probes, groups, health and bias findings"
REJECT_REASON = "not good enough: say why"


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the review commands to the `sslpipe` parser; each sets `handler` (args -> exit status)."""
    r = sub.add_parser("review", help="the candidate (or --version) beside the champion: probes, groups, health, "
                                      "gate, review state, bias findings of its new batches; and what to run next")
    r.add_argument("model", nargs="?", help="registered model (default: registry.model_name, ssl-encoder)")
    r.add_argument("--version", help="review this version instead of the candidate")
    r.add_argument("--json", action="store_true", help="print JSON (and nothing else) on stdout")
    r.add_argument("--html", metavar="FILE", help="also write one self-contained HTML page")
    _common(r)
    r.set_defaults(handler=_review)

    a = sub.add_parser("approve", help="make MODEL@VERSION the champion (exit 1 when refused: gate failed without "
                                       "--force, already champion, ...)")
    a.add_argument("spec", metavar="MODEL@VERSION")
    a.add_argument("--force", action="store_true", help="approve although the gate failed (recorded as forced)")
    _decision(a)
    a.set_defaults(handler=_approve)

    j = sub.add_parser("reject", help="mark MODEL@VERSION rejected; it stops being the candidate")
    j.add_argument("spec", metavar="MODEL@VERSION")
    _decision(j)
    j.set_defaults(handler=_reject)

    b = sub.add_parser("rollback", help="champion back to the previous champion (from the alias history), or --to")
    b.add_argument("model", metavar="MODEL")
    b.add_argument("--to", help="an earlier champion's version (default: the previous champion)")
    _decision(b)
    b.set_defaults(handler=_rollback)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", help="state folder (default $SSLPIPE_HOME or ./.sslpipe)")
    p.add_argument("--config", help="the YAML config the home is run with (its registry.model_name)")


def _decision(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", required=True, help="why (recorded in MLflow and Dagster)")
    p.add_argument("--reviewer", default=None, help="who decides (default: the OS user)")
    _common(p)


def _open(a: argparse.Namespace, model: str | None):
    """-> (settings, Registry) for the model (default: the config's registry.model_name); BadArguments when the
    home has no MLflow store (a review never creates one)."""
    from assets import MlflowTracking
    from assets.mlflow_registry import Registry
    from assets.review import BadArguments
    from pipelines.settings import Settings, resources_for

    s = Settings.from_env(home=a.home).with_config_file(a.config)
    t = resources_for(s)["mlflow"]
    db = t.missing_store()
    if db is not None:
        raise BadArguments(f"no MLflow store at {db} (is --home right?)")
    if model is not None and model != t.model_name:
        t = MlflowTracking(tracking_uri=t.tracking_uri, artifact_root=t.artifact_root, experiment=t.experiment,
                           model_name=model, ui_url=t.ui_url, dagster_url=t.dagster_url)
    return s, Registry(t)


def _where(a: argparse.Namespace, s) -> str:
    """The --home and --config of this call, as absolute paths, for commands printed to run next."""
    out = f" --home {shlex.quote(str(Path(s.home.root).resolve()))}"
    if a.config:
        out += f" --config {shlex.quote(str(Path(a.config).resolve()))}"
    return out


def _next_commands(a, s, name: str, subject: dict | None, champion: dict | None, previous: str | None) -> dict:
    where = _where(a, s)
    cmds = {}
    if subject is not None:
        spec = shlex.quote(f"{name}@{subject['version']}")
        gate_ok = bool((subject.get("gate") or {}).get("passed"))
        rejected = (subject.get("review") or {}).get("status") == "rejected"
        force = "" if gate_ok and not rejected else " --force"
        cmds["approve"] = f"sslpipe approve {spec} --reason {shlex.quote(APPROVE_REASON)}{force}{where}"
        if not rejected:
            cmds["reject"] = f"sslpipe reject {spec} --reason {shlex.quote(REJECT_REASON)}{where}"
    if champion is not None and previous is not None:
        cmds["rollback"] = (f"sslpipe rollback {shlex.quote(name)} --reason {shlex.quote('say why')}{where}"
                            f"  # champion {champion['version']} -> {previous}")
    return cmds


def _review(a: argparse.Namespace) -> int:
    from assets.review import ReviewError, gather
    from ssl_ops.review.compare import build_comparison
    from ssl_ops.review.render import figure_png, render_html, render_text
    from ssl_ops.review.plots import label_fraction_curve

    try:
        # MLflow and matplotlib may print; with --json, stdout holds the JSON alone
        with contextlib.redirect_stdout(sys.stderr):
            s, reg = _open(a, a.model)
            version = None
            if a.version is not None:
                if not a.version.isdigit():
                    from assets.review import BadArguments

                    raise BadArguments(f"--version {a.version!r}: a version number is expected")
                version = str(int(a.version))
            g = gather(reg, s.home, version, with_plots=bool(a.html))
            previous = reg.previous_champion() if g["champion"] is not None else None
            cmds = _next_commands(a, s, reg.name, g["subject"], g["champion"], previous)
            cmp = build_comparison(reg.name, g["subject"], g["champion"], g["bias"], g["history"], cmds,
                                   notes=g["notes"], home=str(s.home.root))
            html_path = None
            if a.html:
                main = g["subject"] or g["champion"]
                plots = [p for who in (g["subject"], g["champion"]) for p in (who or {}).get("plots", [])]
                if not (main or {}).get("plots") and main is not None and main["report"] is not None:
                    # a version logged without plots: draw its label-fraction curve from its probe report
                    plots.insert(0, ("accuracy against label fraction, with the baselines"
                                  + (" and the champion on the same split" if cmp["same_split"] else ""),
                                  figure_png(label_fraction_curve(main["report"]))))
                html_path = Path(a.html)
                html_path.write_text(render_html(cmp, plots), encoding="utf-8")
    except ReviewError as e:
        print(f"sslpipe review: {terminal(str(e))}", file=sys.stderr)
        return e.exit_code
    except ValueError as e:  # SettingsError: a bad config file
        print(f"sslpipe review: {terminal(str(e))}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(cmp, indent=1, default=str))
    else:
        sys.stdout.write(render_text(cmp))
        if html_path is not None:
            print(f"\nHTML: {terminal(html_path.resolve())}")
    return 0


def _decide(a: argparse.Namespace, command: str, model: str | None, run) -> int:
    from assets.review import BadArguments, ReviewError
    from pipelines.settings import prepare_instance

    try:
        reviewer = a.reviewer if a.reviewer is not None else _os_user()
        s, reg = _open(a, model)
        rec = run(reg, lambda: prepare_instance(s), reviewer)
    except ReviewError as e:
        what = "refused" if e.exit_code == 1 else "bad arguments"
        print(f"sslpipe {command}: {what}: {terminal(str(e))}", file=sys.stderr)
        return e.exit_code
    except ValueError as e:  # SettingsError
        print(f"sslpipe {command}: bad arguments: {terminal(str(e))}", file=sys.stderr)
        return BadArguments.exit_code
    alias = "candidate" if command == "reject" else "champion"
    moved = f"{rec['from'] or 'none'} -> {rec['to'] or 'none'}"
    if command == "reject" and rec["from"] is None:
        moved = "unchanged (it was not on this version)"
    print(f"{command}: {terminal(rec['model'])} version {terminal(rec['version'])} by {terminal(rec['reviewer'])} "
          f"at {terminal(rec['time'])}" + (" (FORCED past a failed gate or a rejection)" if rec.get("forced") else ""))
    print(f"  {alias}: {terminal(moved)}; reason: {terminal(rec['reason'])}")
    print("  recorded in MLflow (alias history, the version's review state) and in Dagster (an observation of "
          "registered_model)")
    return 0


def _os_user() -> str:
    """The OS user, the default reviewer; BadArguments when the system cannot tell (no passwd entry, no
    LOGNAME/USER): then --reviewer is needed."""
    from assets.review import BadArguments

    try:
        return getpass.getuser()
    except (KeyError, OSError) as e:
        raise BadArguments(f"cannot tell who you are ({e}); give --reviewer NAME") from None


class _LazyInstance:
    """The Dagster instance, made only once a decision is allowed (a refusal touches nothing)."""

    def __init__(self, make):
        self._make, self._inst = make, None

    def report_runless_asset_event(self, event):
        if self._inst is None:
            self._inst = self._make()
        return self._inst.report_runless_asset_event(event)


def _on_version(a: argparse.Namespace, command: str, decide) -> int:
    """approve / reject: MODEL@VERSION parsed (exit 2 when it is not one), then the decision."""
    from assets.review import BadArguments, parse_model_version

    try:
        model, version = parse_model_version(a.spec)
    except BadArguments as e:
        print(f"sslpipe {command}: bad arguments: {terminal(str(e))}", file=sys.stderr)
        return 2
    return _decide(a, command, model, lambda reg, inst, who: decide(reg, _LazyInstance(inst), version, who))


def _approve(a: argparse.Namespace) -> int:
    from assets.review import approve

    return _on_version(a, "approve", lambda reg, inst, version, who: approve(reg, inst, version, who, a.reason,
                                                                             force=a.force))


def _reject(a: argparse.Namespace) -> int:
    from assets.review import reject

    return _on_version(a, "reject", lambda reg, inst, version, who: reject(reg, inst, version, who, a.reason))


def _rollback(a: argparse.Namespace) -> int:
    from assets.review import rollback

    if a.to is not None and not a.to.isdigit():
        print(f"sslpipe rollback: bad arguments: --to {terminal(a.to)!r}: a version number is expected", file=sys.stderr)
        return 2
    return _decide(a, "rollback", a.model, lambda reg, inst, who: rollback(reg, _LazyInstance(inst), a.to, who,
                                                                           a.reason))
