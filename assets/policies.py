"""Retry policies, and failures that no retry can help.

A retry helps where the cause may pass: reading landing files on a network mount, writing shards, a tracking
server briefly away, a training process that died (it resumes from its checkpoint). It cannot help a failed
check, a bad config, damaged data or a missing upstream: those raise `failure(...)`, which Dagster does not
retry (dg.Failure with allow_retries=False), so the run fails at once with the reason.
"""

import dagster as dg

# landing and home I/O: raw_images, eval_images, image_shards
IO_RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
# the MLflow tracking server / registry: probe_report (loads the champion), registered_model
TRACKING_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
# training: resumes from models/<key>/checkpoint.pt, logging into the same MLflow run
TRAIN_RETRY = dg.RetryPolicy(max_retries=1, delay=10)


def failure(description: str, **metadata) -> dg.Failure:
    """A failure a retry cannot help (a failed check, bad config, damaged or missing data): not retried."""
    return dg.Failure(description, metadata=metadata or None, allow_retries=False)
