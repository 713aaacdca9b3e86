"""Vision Transformers in plain torch (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021), with
the pieces MAE needs (He et al., CVPR 2022): fixed 2-D sin-cos position embeddings and an optional subset
of patch tokens to encode.

    vit = vit_small(image_size=32, patch_size=4)      # x: [N, 3, 32, 32] -> [N, 384] (the class token)
    tokens = vit.forward_tokens(x, keep=ids)           # ids: [N, L_keep] patch indices -> [N, 1 + L_keep, D]
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """[grid*grid, dim] fixed 2-D sine-cosine position embeddings (MAE's get_2d_sincos_pos_embed)."""
    if dim % 4:
        raise ValueError(f"embedding width {dim} must be divisible by 4")
    coords = torch.arange(grid, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))

    def emb(pos):
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    return torch.cat([emb(yy), emb(xx)], dim=1).float()


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # [N, heads, L, d/heads]
        x = x + self.proj(attn.transpose(1, 2).reshape(n, length, d))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, image_size: int, patch_size: int, dim: int, depth: int, heads: int):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.patch_size, self.grid = patch_size, image_size // patch_size
        self.num_patches = self.grid ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", torch.cat([torch.zeros(1, dim), sincos_2d(self.grid, dim)])[None],
                             persistent=False)  # [1, 1 + L, D], fixed
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out_dim = dim
        w = self.patch_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """x: [N, 3, H, W]; keep: [N, L_keep] indices of the patches to encode (all when None) ->
        [N, 1 + L_keep, D] normalised tokens, class token first."""
        p = self.patch_embed(x)  # [N, D, gh, gw]
        p = p.flatten(2).transpose(1, 2) + self._positions(p.shape[2], p.shape[3])  # [N, L, D]
        if keep is not None:
            p = torch.gather(p, 1, keep[..., None].expand(-1, -1, p.shape[-1]))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        t = torch.cat([cls, p], dim=1)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)

    def _positions(self, gh: int, gw: int) -> torch.Tensor:
        """[1, gh*gw, D] patch positions; other grids than the training one (e.g. DINO's local crops) get the
        table bicubically interpolated, as DINO does."""
        table = self.pos_embed[:, 1:]
        if (gh, gw) == (self.grid, self.grid):
            return table
        d = table.shape[-1]
        grid = table.reshape(1, self.grid, self.grid, d).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        return grid.permute(0, 2, 3, 1).reshape(1, gh * gw, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, 3, H, W] -> [N, D], the class token."""
        return self.forward_tokens(x)[:, 0]

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> [N, L, patch_size**2 * 3] pixel patches, row-major, (py, px, c) inside a patch."""
        n, c, h, w = x.shape
        p, g = self.patch_size, h // self.patch_size
        return x.reshape(n, c, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(n, g * g, p * p * c)


def vit_tiny(image_size: int = 224, patch_size: int = 16) -> ViT:
    return ViT(image_size, patch_size, dim=192, depth=12, heads=3)


def vit_small(image_size: int = 224, patch_size: int = 16) -> ViT:
    return ViT(image_size, patch_size, dim=384, depth=12, heads=6)


