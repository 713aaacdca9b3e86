"""WebDataset shards of accepted samples: deterministic, atomic, indexed."""

from ssl_ops.shards.writer import ShardConfig, ShardIndex, load_index, shard_batch

__all__ = ["ShardConfig", "ShardIndex", "load_index", "shard_batch"]
