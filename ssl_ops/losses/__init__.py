"""Self-supervised losses, one per file, each a pure function of tensors (no model state).

Losses that contrast against other samples take `gather=False`: set it under DDP to use every rank's
samples as negatives (only then is torch.distributed touched).
"""

from ssl_ops.losses.barlow_twins import barlow_twins_loss
from ssl_ops.losses.byol import byol_loss
from ssl_ops.losses.dino import dino_loss, update_center
from ssl_ops.losses.mae import mae_loss
from ssl_ops.losses.mocov3 import mocov3_loss
from ssl_ops.losses.nt_xent import nt_xent_loss
from ssl_ops.losses.vicreg import vicreg_loss

__all__ = ["barlow_twins_loss", "byol_loss", "dino_loss", "mae_loss", "mocov3_loss", "nt_xent_loss", "update_center",
           "vicreg_loss"]
