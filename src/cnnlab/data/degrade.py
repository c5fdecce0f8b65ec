"""What happens to a picture after it is drawn: sensor noise and JPEG storage."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


def add_noise(images: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian pixel noise of standard deviation ``std``, rounded and clipped to 0..255, in place.

    Drawn with torch's generator (seeded from ``rng``) in chunks: fast, and memory stays small.
    """
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    out = torch.from_numpy(images)
    for chunk in out.split(8192):
        noisy = torch.randn(chunk.shape, generator=generator).mul_(std).add_(chunk)
        chunk.copy_(noisy.round_().clamp_(0, 255))
    return images


def jpeg_roundtrip(images: np.ndarray, quality: int) -> np.ndarray:
    """(N, H, W, 3) uint8 images as they read back after saving as JPEG at ``quality``.

    Pillow's encoder (libjpeg, 4:2:0 chroma subsampling, as most tools save) on worker threads:
    encoding releases the GIL. Deterministic for given pixels and quality.
    """
    from PIL import Image

    out = np.empty_like(images)

    def block(lo: int) -> None:
        for i in range(lo, min(lo + 1024, len(images))):
            buffer = io.BytesIO()
            Image.fromarray(images[i]).save(buffer, format="JPEG", quality=quality)
            buffer.seek(0)
            with Image.open(buffer) as decoded:
                out[i] = np.asarray(decoded.convert("RGB"))

    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
        list(pool.map(block, range(0, len(images), 1024)))
    return out
