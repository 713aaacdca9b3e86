"""The `sslpipe` command.

    sslpipe demo [--home DIR]                         write the embedded digits dataset and run the graph
    sslpipe run [--home DIR] [--landing DIR] [--eval DIR] [--config FILE] [--select a,b,c] [--batches x,y]
    sslpipe verify [--home DIR] [--config FILE] [--batches x,y] [--quick]
                                                      check manifests, shard indexes and shards; exit 0 when
                                                      all is intact, 1 when something is damaged (each named,
                                                      with the command that rebuilds it), 2 for bad arguments
    sslpipe review [MODEL] [--version V] [--json] [--html FILE]     the candidate beside the champion
    sslpipe approve MODEL@VERSION --reason TEXT [--reviewer NAME] [--force]
    sslpipe reject MODEL@VERSION --reason TEXT [--reviewer NAME]
    sslpipe rollback MODEL [--to VERSION] --reason TEXT [--reviewer NAME]
    sslpipe lineage MODEL@VERSION|MODEL@ALIAS [--json]              what made a model
    sslpipe lineage --image PATH|SHA256 [--json]                    which batch, shard and models hold an image
    (pipelines/review_cli.py and pipelines/lineage_cli.py; they take --home and --config as run does)

`run` and `demo` end with a results table (the new model beside raw pixels, a random-init encoder and the
champion: kNN k=20, linear with its 95% interval, linear with 10% of the labels), the gate's decision in one
line (a WARNING with the failed checks when it did not pass) and the next commands (pipelines/results.py).

Exit status: 0 when every run succeeded and no blocking check failed, also when the registered version did
not pass the gate (a WARNING line says so); 1 when a blocking check or a step failed (each named, with why) or
the disk is full (one line: where, and how much is free); 2 for bad arguments or settings; 3, only with
--strict, when all ran but the registered version was not promoted (the gate failed).
"""

from __future__ import annotations

import argparse
import sys
import time

from ssl_ops.escape import terminal  # stdlib only: cheap to import

# Heavy imports (dagster, torch via webdataset) happen inside the commands: ingestion's worker processes
# are spawned and re-import this entry module, so it must stay cheap to import.


STRICT_HELP = ("exit 3 (instead of 0) when everything ran but the registered version did not pass the gate (not "
               "promoted); 1 and 2 keep their meaning")


EXIT_EPILOG = """It ends with a results table (the new model beside raw pixels, a random-init encoder and the
champion), the gate's decision and the next commands.

exit status:
  0  every run succeeded and no blocking check failed; also when the registered version did not pass
     the gate and was not promoted (a WARNING line says so and why)
  1  a blocking check or a step failed (each named, with why), or the disk is full
  2  bad arguments or settings
  3  only with --strict: everything ran, but the registered version did not pass the gate"""


def _settings(a: argparse.Namespace):
    from pipelines.settings import Settings

    s = Settings.from_env(home=a.home, landing=getattr(a, "landing", None), eval_dir=getattr(a, "eval", None))
    return s.with_config_file(getattr(a, "config", None))


def dagster_dev_command(s) -> str:
    """The command that opens this home in the Dagster UI, with the daemon (sensors, schedules, backfills): the
    same settings as this run, from any folder, exactly as printed."""
    import shlex
    from pathlib import Path

    from pipelines.launch import ROOT

    env = s.environment()
    dagster = Path(sys.executable).with_name("dagster")
    return " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items()) + \
        f" {shlex.quote(str(dagster))} dev -w {shlex.quote(str(ROOT / 'workspace.yaml'))}"


def _demo_config(root) -> str:
    """The demo's config file in its home: approval auto (nobody reviews a demo), written once."""
    from pathlib import Path

    p = Path(root) / "demo.yaml"
    if not p.is_file():
        p.write_text("# sslpipe demo: the gate's pass makes the champion without a reviewer.\n"
                     "# Without this file (sslpipe run), a person approves: sslpipe review, sslpipe approve.\n"
                     "registry:\n  approval: auto\n")
    return str(p)


def _run(s, select: str | None, batches: str | None, verbose: bool, strict: bool = False) -> int:
    from pipelines.results import STRICT_EXIT, end_of_run
    from pipelines.runner import run_pipeline

    t0 = time.time()
    outcomes = run_pipeline(s, select=select, only_batches=[b for b in (batches or "").split(",") if b] or None,
                            log_level="DEBUG" if verbose else "INFO")
    blocked = [(o, c) for o in outcomes for c in o.blocked]
    failed = [o for o in outcomes if o.errors or (not o.success and not o.blocked)]  # a killed run has no error
    print(f"\n{len(outcomes)} run(s) in {time.time() - t0:.1f}s; home {terminal(s.home.root)}; "
          f"see them (and turn the sensors on) with:\n  {terminal(dagster_dev_command(s))}")
    end = end_of_run(s, outcomes)
    if end is not None:
        print("\n".join(end.lines))
    elif any(a in o.materialized for o in outcomes for a in ("ssl_encoder", "registered_model")):
        from pipelines.results import mlflow_where

        print(f"training runs and registered models: {terminal(mlflow_where(s))}")
    if blocked or failed:
        for o, c in blocked:
            print(f"BLOCKED: {c.asset}:{c.check} ({terminal(o.partition or 'global')}): {terminal(c.why)}", file=sys.stderr)
        for o in failed:
            for e in o.errors or [f"the run did not succeed (killed or terminated?); see run {o.run_id} in the UI"]:
                print(f"FAILED: {o.job} ({terminal(o.partition or 'global')}): {terminal(e)}", file=sys.stderr)
        return 1
    if end is not None and end.not_promoted:
        if strict:
            print(f"exit status {STRICT_EXIT} (--strict): the run went well but version {terminal(end.gate.version)} "
                  f"was not promoted")
            return STRICT_EXIT
        print(f"exit status 0: the run went well, but version {terminal(end.gate.version)} was not promoted "
              f"(with --strict this exits {STRICT_EXIT})")
    return 0


def _demo_to_storage(s, write_demo) -> dict:
    """Production: the demo data written to a temporary folder and landed in the prefix (sslpipe land's code)."""
    import tempfile

    from pipelines.land_cli import land_batch, land_eval
    from ssl_ops.home import Home

    with tempfile.TemporaryDirectory(prefix="sslpipe-demo-") as tmp:
        staging = Home.resolve(tmp).ensure()
        w = write_demo(staging)
        for b in w["batches"]:
            land_batch(s, staging.landing / b, b, exist_ok=True)
        land_eval(s, staging.eval_dir)
    return w


def _verify(a: argparse.Namespace) -> int:
    """Check a home's manifests, shard indexes and shards (ssl_ops.shards.verify_home); print one line per
    damaged item with the command that rebuilds it, then a summary. 0: all intact, 1: damage, 2: bad arguments."""
    from dataclasses import asdict

    from pipelines.settings import Settings
    from ssl_ops.shards import ShardConfig
    from ssl_ops.shards.verify_home import home_batches, verify_home

    s = Settings.from_env(home=a.home).with_config_file(a.config)  # bad file or keys: SettingsError, exit 2
    home = s.home
    shard_config = asdict(ShardConfig(**(s.shards or {})))
    if not home.root.is_dir():
        print(f"sslpipe verify: no home at {terminal(home.root)}", file=sys.stderr)
        return 2
    known = home_batches(home)
    wanted = [b for b in (a.batches or "").split(",") if b] or None
    unknown = [b for b in wanted or [] if b not in known]
    if unknown:
        print(f"sslpipe verify: unknown batch(es) {', '.join(map(terminal, unknown))}; the home holds "
              f"{', '.join(map(terminal, known)) or 'none'}", file=sys.stderr)
        return 2
    t0 = time.time()
    rep = verify_home(home, wanted, full=not a.quick, config_file=s.config_file, shard_config=shard_config)
    for d in rep.damaged:
        print(f"DAMAGED [{terminal(d.batch)}] {terminal(d.path)}: {terminal(d.what)}\n    rebuild: {terminal(d.rebuild)}")
        if d.note:
            print(f"    note: {terminal(d.note)}")
    mode = "quick: indexes, sizes, sha256" if a.quick else "full: every member read back and decoded"
    print(f"verified {len(rep.batches)} batch(es), {rep.shards} shard(s), {rep.samples} sample(s) in "
          f"{terminal(rep.home)} ({mode}) in {time.time() - t0:.1f}s: "
          + ("all intact" if rep.ok else f"{len(rep.damaged)} damaged item(s)"))
    return 0 if rep.ok else 1


def main(argv: list[str] | None = None) -> int:
    """The command; its output piped into a reader that stops early (`| head`) ends it quietly, as for any tool."""
    try:
        rc = _main(argv)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more can reach the reader
        return 1


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sslpipe", description="Self-supervised pretraining pipeline on Dagster.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="register new landing batches and materialize the selected assets",
                         epilog=EXIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--home", help="state folder (default $SSLPIPE_HOME or ./.sslpipe)")
    run.add_argument("--landing", help="landing folder, one sub-folder per batch (default <home>/landing)")
    run.add_argument("--eval", help="labeled eval set (default <home>/eval)")
    run.add_argument("--config", help="YAML config: contract, eval_contract, workers, shards, train")
    run.add_argument("--select", help="comma-separated asset names (default: the whole graph)")
    run.add_argument("--batches", help="comma-separated batch names (default: every batch in the landing folder)")
    run.add_argument("-v", "--verbose", action="store_true", help="show Dagster's debug log")
    run.add_argument("--strict", action="store_true", help=STRICT_HELP)
    demo = sub.add_parser("demo", help="write the embedded digits dataset into the home and run the whole graph",
                          epilog=EXIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--home", help="state folder (default $SSLPIPE_HOME or ./.sslpipe)")
    demo.add_argument("--config", help="YAML config, as for run")
    demo.add_argument("-v", "--verbose", action="store_true")
    demo.add_argument("--strict", action="store_true", help=STRICT_HELP)
    ver = sub.add_parser("verify", help="check every manifest, shard index and shard of a home; says how to "
                                        "rebuild what is damaged (exit 0: intact, 1: damaged, 2: bad arguments)")
    ver.add_argument("--home", help="state folder (default $SSLPIPE_HOME or ./.sslpipe)")
    ver.add_argument("--batches", help="comma-separated batch names (default: every batch in the home)")
    ver.add_argument("--config", help="the YAML config the home is run with (its shard settings), named in the "
                                      "rebuild commands")
    ver.add_argument("--quick", action="store_true",
                     help="indexes, sizes and sha256 only; skip reading back and decoding every member")
    from pipelines import land_cli, lineage_cli, review_cli  # each adds its commands, with a `handler`

    review_cli.add_commands(sub)
    lineage_cli.add_commands(sub)
    land_cli.add_commands(sub)
    a = p.parse_args(argv)
    if getattr(a, "handler", None) is not None:
        return a.handler(a)
    if a.command == "verify":
        from pipelines.settings import SettingsError


        try:
            return _verify(a)
        except SettingsError as e:
            print(f"sslpipe verify: {terminal(str(e))}", file=sys.stderr)
            return 2
    from data_contracts import ContractError
    from pipelines.settings import SettingsError
    from ssl_ops.diskfull import DiskFull

    try:
        s = _settings(a)
        if a.command == "demo":
            from ssl_ops.demo_data import write_demo

            if s.deployment.production:  # the demo's batches and eval set land in the storage prefix
                w = _demo_to_storage(s, write_demo)
            else:
                w = write_demo(s.home)
                print(f"demo data in {s.home.root}: batches {w['batches']}, eval {w['eval']} labeled images "
                      f"({w['moved_to_train']} near-copies of training images kept out of eval)")
            if a.config is None:
                s = s.with_config_file(_demo_config(s.home.root))
            from ssl_ops.demo_data import DEMO_TRAIN

            s = s.with_train_recipe(DEMO_TRAIN)  # the digits' recipe, under any train section of the config
            approval = (s.registry or {}).get("approval", "human")
            print(f"approval: {approval}" + (" (the demo's config, so that the gate's pass makes the champion at "
                                             "once; `sslpipe run` waits for a reviewer: sslpipe review / approve)"
                                             if approval == "auto" else " (champion moves when you run sslpipe approve)"))
            return _run(s, None, None, a.verbose, a.strict)
        return _run(s, a.select, a.batches, a.verbose, a.strict)
    except (SettingsError, ContractError, FileNotFoundError) as e:
        print(f"sslpipe: {terminal(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk: one line that says where and how much; the traceback only with -v
        from ssl_ops.diskfull import is_disk_full, path_in_error

        if not is_disk_full(e):
            raise
        full = e if isinstance(e, DiskFull) else DiskFull.at(path_in_error(e) or a.home or ".")
        if a.verbose:
            import traceback

            traceback.print_exc()
        print(f"sslpipe: {terminal(str(full))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
