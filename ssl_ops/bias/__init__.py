"""Bias checks of a batch: group representation, drift against earlier batches, near duplicates."""

from ssl_ops.bias.report import BiasReport, BiasThresholds, bias_report

__all__ = ["BiasReport", "BiasThresholds", "bias_report"]
