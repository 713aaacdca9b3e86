"""Bias checks of a batch: group representation, drift against earlier batches, near duplicates."""

from ssl_ops.bias.report import BiasReport, bias_report

__all__ = ["BiasReport", "bias_report"]
