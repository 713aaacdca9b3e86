"""MAE (He et al., CVPR 2022): the ViT encodes a random 25% of the patches; a light decoder, given mask
tokens at the other positions, predicts their normalised pixels; the loss is on the removed patches only."""

from __future__ import annotations

import torch
from torch import nn

from ssl_ops.augment import CropFlip
from ssl_ops.losses import mae_loss
from ssl_ops.methods.base import Method, StepOutput, fp32
from ssl_ops.models.vit import ViT, Block, sincos_2d


class MAE(Method):
    name = "mae"

    def __init__(self, backbone, image_size: int, mask_ratio: float = 0.75, decoder_dim: int = 128,
                 decoder_depth: int = 2, decoder_heads: int = 4, norm_pix: bool = True):
        super().__init__()
        if not isinstance(backbone, ViT):
            raise ValueError("mae needs a ViT backbone (vit_tiny or vit_small); "
                             f"got {type(backbone).__name__}")
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.backbone = backbone
        self.views = CropFlip(image_size)
        self.mask_ratio, self.norm_pix = mask_ratio, norm_pix
        p = backbone.patch_size
        self.decoder_embed = nn.Linear(backbone.out_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("decoder_pos", torch.cat([torch.zeros(1, decoder_dim),
                                                       sincos_2d(backbone.grid, decoder_dim)])[None], persistent=False)
        self.decoder = nn.ModuleList(Block(decoder_dim, decoder_heads) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, p * p * 3)

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        x = views[0]
        n, length = x.shape[0], self.backbone.num_patches
        keep_n = max(1, int(length * (1 - self.mask_ratio)))
        order = torch.rand(n, length, device=x.device).argsort(dim=1)  # a random permutation per image
        keep = order[:, :keep_n]
        tokens = self.backbone.forward_tokens(x, keep=keep)  # [N, 1 + keep_n, D]
        d = self.decoder_embed(tokens)
        full = self.mask_token.to(d.dtype).expand(n, length, -1).clone()
        full.scatter_(1, keep[..., None].expand(-1, -1, d.shape[-1]), d[:, 1:])
        t = torch.cat([d[:, :1], full], dim=1) + self.decoder_pos
        for blk in self.decoder:
            t = blk(t)
        pred = self.decoder_pred(self.decoder_norm(t))[:, 1:]  # [N, L, p*p*3]
        mask = torch.ones(n, length, device=x.device)
        mask.scatter_(1, keep, 0.0)
        with fp32(pred):
            loss = mae_loss(pred.float(), self.backbone.patchify(x).float(), mask, self.norm_pix)
        return StepOutput(loss, tokens[:, 0].detach())
