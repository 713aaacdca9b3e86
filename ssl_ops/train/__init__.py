"""Training: the config, the loop, schedules, optimisers, checkpoints, health metrics and DDP pieces."""

from ssl_ops.train.checkpoint import load_encoder, save_encoder
from ssl_ops.train.config import METHOD_NAMES, ConfigError, TrainConfig
from ssl_ops.train.health import effective_rank, embedding_std
from ssl_ops.train.loop import Collapse, NonFiniteLoss, TrainingError, TrainResult, train
from ssl_ops.train.schedule import lr_at
from ssl_ops.train.source import BatchSource, ShardSource

__all__ = ["METHOD_NAMES", "BatchSource", "Collapse", "ConfigError", "NonFiniteLoss", "ShardSource", "TrainConfig",
           "TrainResult", "TrainingError", "effective_rank", "embedding_std", "load_encoder", "lr_at", "save_encoder",
           "train"]
