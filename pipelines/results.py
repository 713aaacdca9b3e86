"""The end of `sslpipe run` / `sslpipe demo`: the results table, the gate's decision, and what to do next.

    end = end_of_run(settings, outcomes)      # None when no probe report was made in these runs
    print("\n".join(end.lines)); end.not_promoted

Sources: the probe report this run's probe_report wrote (its record, records/probe_report.json, names the
JSON file models/<run key>/probe/<key>.json) and the registered_model materialization of this run in the
Dagster instance (version, gate summary with its failed checks, review state, champion, reused). Rendering is
ssl_ops.review.results (every value from the data escaped). The commands printed work exactly as printed:
the sslpipe and mlflow executables of the environment running now, SSLPIPE_HOME when the home is not the
default, --config when the settings came from a file, the tracking server's own URL or the `mlflow ui`
command over the local SQLite store (no port assumed).
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ssl_ops.escape import terminal
from ssl_ops.home import DEFAULT_HOME
from ssl_ops.review.results import GateOutcome, gate_lines, results_table

STRICT_EXIT = 3  # `--strict`: the run went well but the registered version did not pass the gate


@dataclass
class EndOfRun:
    lines: list[str] = field(default_factory=list)
    gate: GateOutcome | None = None

    @property
    def not_promoted(self) -> bool:
        return self.gate is not None and not self.gate.promoted


def sslpipe_executable() -> str:
    """The sslpipe command running now: its console script (sys.argv[0]) when that is it, else the one beside
    this Python (the same environment), else this Python running the module."""
    a0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if a0 is not None and a0.name == "sslpipe" and a0.is_file():
        return str(a0.absolute())
    beside = Path(sys.executable).with_name("sslpipe")
    if beside.is_file():
        return str(beside)
    return f"{shlex.quote(sys.executable)} -m pipelines.cli"


def _bin(name: str) -> str:
    """An executable of the environment running now (beside sys.executable, not resolved: a venv's bin/)."""
    return str(Path(sys.executable).with_name(name))


def sslpipe_prefix(s) -> str:
    """`[SSLPIPE_HOME=...] sslpipe` for this home: SSLPIPE_HOME when it is not the default (./.sslpipe here)."""
    default = (Path.cwd() / DEFAULT_HOME).resolve()
    exe = sslpipe_executable()
    exe = exe if " -m " in exe else shlex.quote(exe)
    return (f"SSLPIPE_HOME={shlex.quote(str(s.home.root))} " if Path(s.home.root) != default else "") + exe


def config_arg(s) -> str:
    return f" --config {shlex.quote(s.config_file)}" if s.config_file else ""


def mlflow_where(s, version: str | None = None) -> str:
    """The tracking server's address (of the version when given), or the command that opens the local store."""
    from pipelines.settings import resources_for

    t = resources_for(s)["mlflow"]
    if t.tracking_uri.startswith(("http://", "https://")):
        return t.version_url(version) if version else t.ui_url
    return f"{shlex.quote(_bin('mlflow'))} ui --backend-store-uri {shlex.quote(t.tracking_uri)}"


def _latest(instance, asset: str, run_ids: set[str]):
    """The latest materialization of `asset` if one of these runs made it, else None."""
    import dagster as dg

    recs = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
    if not recs or recs[0].run_id not in run_ids:
        return None
    return {k: v.value for k, v in recs[0].asset_materialization.metadata.items()}


def _probe_report(s, run_key: str | None) -> dict | None:
    from assets.records import read_record

    rec = read_record(s.home.root, "probe_report")
    if rec is None or (run_key is not None and rec.run_key != run_key):
        return None
    p = Path(rec.report)
    return json.loads(p.read_text()) if p.is_file() else None


def end_of_run(s, outcomes, instance=None) -> EndOfRun | None:
    """The table, the gate's line and the next commands, when these runs made a probe report (else None)."""
    ran = {o.run_id for o in outcomes if "probe_report" in o.materialized}
    if not ran:
        return None
    from pipelines.settings import approval_mode, prepare_instance

    instance = instance or prepare_instance(s)
    registered = _latest(instance, "registered_model",
                         {o.run_id for o in outcomes if "registered_model" in o.materialized})
    report = _probe_report(s, registered.get("run_key") if registered else None)
    if report is None:
        return EndOfRun([f"(no probe report readable in {terminal(s.home.root)}: no results table)"])
    return render_end(s, report, registered, approval_mode(s.registry))


def render_end(s, report: dict, registered: dict | None, approval: str = "human") -> EndOfRun:
    """report: the probe report (ssl_ops.probes.report plus champion_version); registered: registered_model's
    materialization metadata (None when this run registered nothing)."""
    gate = None
    if registered is not None:
        gate = GateOutcome(model=str(registered["model_name"]), version=str(registered["version"]),
                           passed=bool(registered["gate_passed"]), summary=str(registered.get("gate", "")),
                           review=str(registered.get("review", "none")),
                           champion_version=None if registered.get("champion_version") in (None, "none")
                           else str(registered["champion_version"]),
                           reused=bool(registered.get("reused")), approval=approval)
    if gate is not None:
        role = " (the champion)" if gate.champion_version == gate.version else ""
        model_label = f"version {gate.version} of {gate.model}{role}"
        if not gate.reused:
            model_label = "new model: " + model_label
    else:
        model_label = "new model (not registered in this run)"
    cv = report.get("champion_version")
    lines = [""] + results_table(report, model_label, f"champion (version {cv})" if cv else "champion")
    if gate is not None:
        lines += gate_lines(gate)
    lines += next_steps(s, gate)
    return EndOfRun(lines, gate)


def next_steps(s, gate: GateOutcome | None) -> list[str]:
    """What to do next, as commands that work exactly as printed (quoted for a POSIX shell)."""
    pre, cfg = sslpipe_prefix(s), config_arg(s)
    out = ["NEXT:"]
    if gate is not None:
        m, v = gate.model, gate.version
        spec = shlex.quote(f"{m}@{v}")
        if gate.passed and gate.review == "pending":
            out += [f"  review it:   {pre} review {shlex.quote(m)}{cfg}",
                    f"  approve it:  {pre} approve {spec} --reason 'reviewed: ...'{cfg}",
                    f"  or reject:   {pre} reject {spec} --reason '...'{cfg}"]
        elif not gate.passed:
            out += [f"  see why:     {pre} review {shlex.quote(m)} --version {shlex.quote(v)}{cfg}",
                    f"  (approving it anyway is recorded as forced: {pre} approve {spec} --force --reason '...'{cfg})"]
        else:
            out += [f"  review it:   {pre} review {shlex.quote(m)} --version {shlex.quote(v)}{cfg}",
                    f"  load it:     mlflow.pyfunc.load_model({json.dumps(f'models:/{m}@champion')}) "
                    f"(tracking URI {resources_tracking_uri(s)})"]
        out.append(f"  lineage:     {pre} lineage {spec}{cfg}")
    out.append(f"  more data:   put a batch folder in {s.home.landing}/ and run {pre} run{cfg}")
    out.append(f"  training runs and registered models: {mlflow_where(s, gate.version if gate else None)}")
    return [out[0]] + [terminal(x) for x in out[1:]]


def resources_tracking_uri(s) -> str:
    from pipelines.settings import resources_for

    return resources_for(s)["mlflow"].tracking_uri


__all__ = ["STRICT_EXIT", "EndOfRun", "end_of_run", "mlflow_where", "next_steps", "render_end", "sslpipe_executable",
           "sslpipe_prefix"]
