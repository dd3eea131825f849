"""The in-memory data path against plain per-image code."""

import torch
import torch.nn.functional as F

from normlab.data import PAD, crop_flip, crop_flip_params


def test_crop_flip_is_a_per_image_padded_crop_then_flip():
    """The batched gather gives what torchvision's RandomCrop(padding=4) + RandomHorizontalFlip do per image,
    for the offsets and flips drawn."""
    images = torch.randint(0, 256, (16, 3, 8, 10), dtype=torch.uint8)
    dy, dx, flip = crop_flip_params(16, torch.Generator().manual_seed(0), "cpu")
    assert dy.unique().numel() > 1 and dx.unique().numel() > 1 and 0 < flip.sum() < 16  # cases exercised
    ours = crop_flip(images, dy, dx, flip)
    for i in range(16):
        y, x = dy[i].item(), dx[i].item()
        crop = F.pad(images[i], (PAD, PAD, PAD, PAD))[:, y : y + 8, x : x + 10]
        torch.testing.assert_close(ours[i], crop.flip(-1) if flip[i] else crop, rtol=0, atol=0)
