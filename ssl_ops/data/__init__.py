"""Reading training shards: WebDataset pipelines that yield fixed-size batches of uint8 images."""

from ssl_ops.data.loader import LoaderConfig, decode_image, make_loader, shard_urls

__all__ = ["LoaderConfig", "decode_image", "make_loader", "shard_urls"]
