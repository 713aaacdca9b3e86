"""A concise console logger for `sslpipe run`: the assets' own messages (progress, findings), one per line,
without Dagster's event stream, which the runner summarises itself and the UI shows in full."""

import logging
import sys

import dagster as dg
from dagster._core.log_manager import LOG_RECORD_METADATA_ATTR

from ssl_ops.escape import terminal


class _AssetMessagesOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, LOG_RECORD_METADATA_ATTR, None)
        if meta is None:
            return True
        if meta.get("dagster_event") is not None:
            return getattr(record, "sslpipe_pool_wait", False)  # framework events: steps, materializations, ...
        record.msg, record.args = meta.get("orig_message", record.msg), ()
        return True


class _PoolWaits(logging.Filter):
    """A step waiting for a pool (one training, one ingestion at a time across runs) is said, at INFO: the user
    should know why nothing moves. Dagster logs it as a DEBUG engine event."""

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, LOG_RECORD_METADATA_ATTR, None) or {}
        message = meta.get("orig_message") or ""
        if meta.get("dagster_event") is not None and message.startswith("Step blocked by limit for pool "):
            step = meta.get("step_key") or "a step"
            record.msg, record.args = (f"{step}: waiting for a free slot of pool {message.rsplit(' ', 1)[-1]} "
                                       f"(another run holds it; one at a time across runs)"), ()
            record.levelno, record.levelname, record.sslpipe_pool_wait = logging.INFO, "INFO", True
        return True


class _TerminalSafe(logging.Formatter):
    """Messages carry values from the data (batch names, paths, findings): control characters and bidi
    overrides are shown escaped (ssl_ops.escape.terminal); a message's own line breaks are kept, its further
    lines indented under it, so that no value can forge a record of its own."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return "\n        ".join(terminal(line) for line in text.split("\n"))


@dg.logger(config_schema={"log_level": dg.Field(str, is_required=False, default_value="INFO")},
           description="The assets' own messages on stdout, without Dagster's event stream.")
def sslpipe_console(init_context) -> logging.Logger:
    logger = logging.Logger("sslpipe", level=logging.DEBUG)  # the handler applies the configured level
    logger.addFilter(_PoolWaits())
    handler = logging.StreamHandler(sys.stdout)
    handler.setLevel(init_context.logger_config["log_level"])
    handler.addFilter(_AssetMessagesOnly())
    handler.setFormatter(_TerminalSafe("    %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger
