"""Ingestion: turn a folder of arriving files into an accepted manifest and a quarantine table."""

from ssl_ops.ingest.probe import ImageLimits, REASONS
from ssl_ops.ingest.scan import ScanResult, list_batch_files, scan_batch

__all__ = ["ImageLimits", "REASONS", "ScanResult", "list_batch_files", "scan_batch"]
