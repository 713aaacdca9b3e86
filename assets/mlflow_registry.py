"""The MLflow model registry as the pipeline uses it: versions keyed by the training run key, the aliases,
and a history of every alias move.

Aliases: `challenger` the latest registered version; `candidate` the latest version whose gate passed, waiting
for a reviewer; `champion` the one in use, moved only by an approval (`sslpipe approve`, or the gate itself when
the config says `registry: {approval: auto}`) or a rollback.

    reg = Registry(tracking)                       # tracking: the MlflowTracking resource
    reg.alias("champion")                          # -> ModelVersion or None
    reg.version_for(run_key)                       # the version registered for that training run, if any
    reg.load_encoder("2")                          # -> (backbone, meta) of version 2
    reg.move_alias("champion", "3", reason="...", dagster_run_id=..., reviewer="ana", action="approve")
    reg.approve("3", "ana", "why"); reg.reject("4", "ana", "why"); reg.rollback("2", "ana", "why")
    reg.previous_champion()                        # where `rollback` goes without --to (from the history)

Alias history: each move is a tag on the registered model, `sslpipe.alias_history.<ns>-<random>`, holding JSON
{time, alias, from_version, to_version, reason, dagster_run_id, reviewer, action[, forced]}; they show on the
model's page in the MLflow UI and `history()` reads them back in order. Each version's review state is its tag
`sslpipe.review` (REVIEW_TAG): {status: pending | approved | rejected | gate_failed | rolled_back, reviewer, time,
reason[, action, from_version, to_version, forced]}.

These methods move aliases and record; whether a move is allowed (gate failed, already champion, ...) is decided
by the caller (assets/review.py), which also reports each decision to Dagster.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path

from assets.mlflow_tracking import MlflowTracking, quiet_mlflow

HISTORY_PREFIX = "sslpipe.alias_history."
RUN_KEY_TAG = "sslpipe.run_key"
GATE_TAG = "sslpipe.gate"  # set last: a version without it did not finish registering
REVIEW_TAG = "sslpipe.review"  # the version's review state (JSON): pending, approved, rejected, gate_failed
AUTO_REVIEWER = "auto (registry.approval: auto)"


def history_key() -> str:
    """A new alias-history tag name: the time in nanoseconds, then a random part. Names sort in time order, and
    two processes recording at once (two reviewers, a registration and a review) never write the same tag,
    where counting the entries (0000, 0001, ...) would let one overwrite the other."""
    return f"{HISTORY_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


class Registry:
    def __init__(self, tracking: MlflowTracking):
        self.tracking = tracking
        self.client = tracking.client()
        self.name = tracking.model_name

    def exists(self) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
            return True
        except MlflowException:
            return False

    def ensure(self) -> None:
        from mlflow.exceptions import MlflowException

        if not self.exists():
            try:
                self.client.create_registered_model(
                    self.name, description="Self-supervised image encoders from the sslpipe Dagster graph. Alias "
                                           "`champion`: the one in use; `challenger`: the latest registered.")
            except MlflowException:  # another process sharing the store created it a moment ago
                if not self.exists():
                    raise

    def alias(self, alias: str):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException:
            return None

    def version_for(self, run_key: str):
        if not self.exists():
            return None
        found = self.client.search_model_versions(f"name = '{self.name}' and tags.`{RUN_KEY_TAG}` = '{run_key}'")
        return max(found, key=lambda v: int(v.version)) if found else None

    def get_version(self, version: str):
        """The ModelVersion, or None when the model has no such version."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(self.name, str(version))
        except MlflowException:
            return None

    def move_alias(self, alias: str, version: str | None, reason: str, dagster_run_id: str | None,
                   reviewer: str | None = None, action: str = "register", forced: bool = False) -> dict:
        """Point `alias` at `version` (None: remove the alias) and record the move in the alias history."""
        current = self.alias(alias)
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "alias": alias,
                  "from_version": str(current.version) if current else None,
                  "to_version": str(version) if version is not None else None,
                  "reason": reason[:4000], "dagster_run_id": dagster_run_id, "reviewer": reviewer, "action": action}
        if forced:
            record["forced"] = True
        if version is None:
            if current is None:
                return record
            self.client.delete_registered_model_alias(self.name, alias)
        else:
            self.client.set_registered_model_alias(self.name, alias, str(version))
        return self.record_history(record)

    def record_history(self, record: dict) -> dict:
        """Append an entry to the alias history (a tag of its own: see history_key)."""
        self.client.set_registered_model_tag(self.name, history_key(), json.dumps(record))
        return record

    def review_state(self, version: str) -> dict:
        """The version's review record (REVIEW_TAG); {} for a version registered before reviews existed."""
        tags = self.client.get_model_version(self.name, str(version)).tags
        return json.loads(tags[REVIEW_TAG]) if REVIEW_TAG in tags else {}

    def set_review_state(self, version: str, status: str, reviewer: str | None, reason: str, **extra) -> dict:
        """extra: what the decision moved, e.g. action="approve", from_version="2", to_version="3", forced=True."""
        record = {"status": status, "reviewer": reviewer, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "reason": reason[:4000], **extra}
        self.client.set_model_version_tag(self.name, str(version), REVIEW_TAG, json.dumps(record))
        return record

    def approve(self, version: str, reviewer: str, reason: str, dagster_run_id: str | None = None,
                forced: bool = False) -> dict:
        """Make `version` the champion (the caller has checked that it may be): champion moves, the candidate
        alias is removed when it pointed there, and the version's review state becomes approved. forced: a
        reviewer overruled a failed gate (recorded). -> the champion move's history record."""
        record = self.move_alias("champion", version, reason, dagster_run_id, reviewer=reviewer, action="approve",
                                 forced=forced)
        self._drop_candidate(version, f"approved as champion: {reason}", dagster_run_id, reviewer, "approve")
        self.set_review_state(version, "approved", reviewer, reason, action="approve",
                              from_version=record["from_version"], to_version=record["to_version"], forced=forced)
        return record

    def reject(self, version: str, reviewer: str, reason: str, dagster_run_id: str | None = None) -> dict:
        """The version's review state becomes rejected, and the candidate alias is removed when it pointed there
        (the caller has checked that the version is not the champion). -> the review record, with from/to of
        the candidate alias (to None: removed; from None: it was not the candidate)."""
        moved = self._drop_candidate(version, f"rejected: {reason}", dagster_run_id, reviewer, "reject")
        return self.set_review_state(version, "rejected", reviewer, reason, action="reject", alias="candidate",
                                     from_version=moved["from_version"] if moved else None, to_version=None)

    def rollback(self, version: str, reviewer: str, reason: str, dagster_run_id: str | None = None) -> dict:
        """Champion back to `version` (an earlier champion; the caller has checked). The version rolled back
        from gets review state rolled_back, the one restored approved (action rollback). -> the history record."""
        record = self.move_alias("champion", version, reason, dagster_run_id, reviewer=reviewer, action="rollback")
        self._drop_candidate(version, f"restored as champion by a rollback: {reason}", dagster_run_id, reviewer,
                             "rollback")
        extra = {"action": "rollback", "from_version": record["from_version"], "to_version": record["to_version"]}
        if record["from_version"] is not None:
            self.set_review_state(record["from_version"], "rolled_back", reviewer, reason, **extra)
        self.set_review_state(version, "approved", reviewer, reason, **extra)
        return record

    def _drop_candidate(self, version: str, reason: str, dagster_run_id: str | None, reviewer: str | None,
                        action: str) -> dict | None:
        cand = self.alias("candidate")
        if cand is not None and str(cand.version) == str(version):
            return self.move_alias("candidate", None, reason, dagster_run_id, reviewer=reviewer, action=action)
        return None

    def champion_line(self) -> list[str]:
        """The champions in order, as the alias history tells it: each move of `champion` adds its version, a
        rollback first takes the version it rolled back from off the end, and a rollback to a version already
        in the line cuts the line back to it. The last entry is the champion (when the history is whole)."""
        line: list[str] = []
        for h in self.history():
            if h.get("alias") != "champion":
                continue
            to, frm = h.get("to_version"), h.get("from_version")
            if h.get("action") == "rollback":
                while line and line[-1] == frm:
                    line.pop()
                if to is not None and to in line:
                    del line[line.index(to) + 1:]
                    continue
            if to is not None:
                line.append(to)
            elif line:
                line.pop()
        return line

    def previous_champion(self) -> str | None:
        """Where a rollback goes: the last champion before the current one in champion_line(), skipping versions
        rejected since and any that no longer exist; None when there is no earlier champion."""
        champ = self.alias("champion")
        current = str(champ.version) if champ else None
        line = [v for v in self.champion_line() if v != current]
        for v in reversed(line):
            mv = self.get_version(v)
            if mv is None:
                continue
            state = json.loads(mv.tags[REVIEW_TAG]) if REVIEW_TAG in mv.tags else {}
            if state.get("status") != "rejected":
                return v
        return None

    def history(self) -> list[dict]:
        if not self.exists():
            return []
        tags = self.client.get_registered_model(self.name).tags
        return [json.loads(tags[k]) for k in sorted(k for k in tags if k.startswith(HISTORY_PREFIX))]

    def load_encoder(self, version: str):
        """The version's encoder (from its model artifacts' encoder.pt) -> (backbone, meta); the download is
        removed once loaded."""
        import mlflow

        from ssl_ops.train import load_encoder

        with self.tracking.using(), tempfile.TemporaryDirectory(prefix="sslpipe-champion-") as dst, quiet_mlflow():
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{self.name}/{version}",
                                                             dst_path=dst))
            found = sorted(local.rglob("encoder.pt"))
            if not found:
                raise FileNotFoundError(f"model version {self.name}/{version} holds no encoder.pt (in {local})")
            return load_encoder(found[0])
