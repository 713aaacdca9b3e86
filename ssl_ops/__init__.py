"""ssl_ops: the pipeline's library. Plain Python + numpy + pillow + pyarrow + webdataset + torch.

No orchestrator, no tracker: everything here runs and is tested without Dagster or MLflow.
"""
