"""`dagster dev` (webserver + daemon) on loopback for the tests of the automation and the UI, and a little
GraphQL client for it. Everything it starts is in its own process group, stopped (and waited for) on exit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterDev:
    """`dagster dev -w workspace.yaml` for a home whose settings are in `env` (SSLPIPE_*, DAGSTER_HOME)."""

    def __init__(self, env: dict, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {**os.environ, **env}
        self.proc = None

    def __enter__(self) -> "DagsterDev":
        dagster = Path(sys.executable).with_name("dagster")
        self.proc = subprocess.Popen([str(dagster), "dev", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1",
                                      "-p", str(self.port)], cwd=ROOT, env=self.env, start_new_session=True,
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                loc = self.query("{ workspaceOrError { ... on Workspace { locationEntries { name "
                                 "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
                entries = loc["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["locationOrLoadError"]:
                    kind = entries[0]["locationOrLoadError"]["__typename"]
                    if kind == "PythonError":
                        raise RuntimeError(f"the code location did not load: {entries[0]['locationOrLoadError']}")
                    if kind == "RepositoryLocation":
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        raise TimeoutError(f"dagster dev did not serve the code location within 180 s:\n{self.tail()}")

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                # the group may outlive its leader (code servers, run workers): wait for them too
                deadline = time.time() + wait
                while time.time() < deadline and _group_alive(self.proc.pid):
                    time.sleep(0.5)
                if not _group_alive(self.proc.pid):
                    break
            except subprocess.TimeoutExpired:
                continue

    def tail(self, n: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def query(self, q: str, variables: dict | None = None) -> dict:
        req = urllib.request.Request(f"{self.url}/graphql", data=json.dumps({"query": q, "variables": variables or {}})
                                     .encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            body = json.loads(r.read())
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def wait_for(what: str, check, timeout: float, dev: DagsterDev | None = None, every: float = 2.0):
    """Poll check() until it returns something truthy; -> that. On timeout: fail saying what, with the log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" +
                         (f"\n--- dagster dev log ---\n{dev.tail()}" if dev else ""))


def runs(instance: dg.DagsterInstance, job: str | None = None, **tags) -> list:
    return list(instance.get_runs(filters=dg.RunsFilter(job_name=job, tags=tags or None)))


def finished(instance: dg.DagsterInstance, job: str, **tags) -> list:
    return [r for r in runs(instance, job, **tags) if r.is_finished]
