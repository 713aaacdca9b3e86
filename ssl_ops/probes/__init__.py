"""Probes of frozen encoders on a labeled eval set: splits, kNN and linear probes, label fractions, per-group
accuracy, bootstrap intervals, and embedding health (alignment, uniformity)."""

from ssl_ops.probes.evaluate import FRACTIONS, probe_features
from ssl_ops.probes.health import alignment, uniformity
from ssl_ops.probes.linear import LinearProbeResult, linear_probe, standardise
from ssl_ops.probes.split import label_subset, probe_split
from ssl_ops.probes.stats import bootstrap_ci, paired_bootstrap_ci, per_group_accuracy, worst_group_gap

__all__ = ["FRACTIONS", "LinearProbeResult", "alignment", "bootstrap_ci", "label_subset", "linear_probe", "paired_bootstrap_ci",
           "per_group_accuracy", "probe_features", "probe_split", "standardise", "uniformity", "worst_group_gap"]
