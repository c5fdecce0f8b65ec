"""Image files to uint8 arrays: safe decoding and the one size-and-channels rule.

The rule (:func:`conform`), used by datasets of files and by ``predict``/``visualize``:

- 16-bit grey is scaled to 8 bit (value / 257, rounded); 32-bit integer or float pixels are
  refused;
- transparency (RGBA, LA, palette images with a transparent entry) is composited over black;
- palette (``P``), CMYK, YCbCr ... are converted to RGB by Pillow; such images count as colour;
- grey to RGB repeats the grey value in the three channels; RGB to grey is Pillow's ``L``
  conversion (ITU-R 601-2 luma: L = R * 299/1000 + G * 587/1000 + B * 114/1000);
- resizing is Pillow's BILINEAR resampling of the whole picture to the target height and width
  (no crop: the aspect ratio is not kept).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.errors import CnnlabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DECODE_VERSION = 1
"""The version of the decoding rule below (and of :func:`decode_images`'s result): raise it with
any change that changes the pixels, so cached decodes (:mod:`cnnlab.data.cache`) are not reused."""
MAX_DATASET_BYTES = 8 << 30
"""The most uint8 pixel data (N x C x H x W bytes) a dataset of files may decode to: 8 GiB."""
RESIZE_RULE = "Pillow BILINEAR resize of the whole picture to HxW (no crop, aspect not kept)"
CHANNEL_RULE = (
    "grey->RGB by repetition; RGB->grey by Pillow 'L' (ITU-R 601-2 luma); alpha composited "
    "over black; palette/CMYK/YCbCr converted to RGB by Pillow; 16-bit grey scaled by 1/257"
)
_GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def shown(path: Path | str) -> str:
    """A path or name for a one-line message: as it is, or quoted with escapes (``repr``) when
    it holds a line break or another character that does not print."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix, hidden files skipped), sorted."""
    with os.scandir(folder) as entries:  # is_file() from the directory entry: no stat call
        keep = {
            e.name
            for e in entries
            if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
            and not e.name.startswith(".")
            and e.is_file()
        }
    paths = {p.name: p for p in folder.iterdir() if p.name in keep}  # iterdir: cheap Paths
    return [paths[name] for name in sorted(paths)]


@contextlib.contextmanager
def open_image(file: Path, *, load: bool = True) -> Iterator[Any]:
    """The picture in ``file`` (decoded unless ``load`` is false), with one-line errors.

    Pillow's decompression-bomb warning (over ``MAX_IMAGE_PIXELS``) is an error here too:
    such a picture is refused before its pixels are decoded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as picture:
                if load:
                    picture.load()
                yield picture
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise CnnlabError(
            f"{shown(file)}: too many pixels to decode safely: {exc} (Pillow's MAX_IMAGE_PIXELS is "
            f"{Image.MAX_IMAGE_PIXELS})"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, EOFError, SyntaxError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CnnlabError(f"{shown(file)}: not a readable image ({reason})") from None


def is_grey(picture: Any) -> bool:
    """Whether a picture's mode is grey (1, L, LA, 16/32-bit integer); palettes count as colour."""
    return picture.mode in _GREY_MODES


@dataclass(frozen=True)
class Conformed:
    """One picture after :func:`conform`: (H, W, C) uint8 and what was done to it."""

    pixels: np.ndarray
    resized: bool
    scaled: bool


def conform(
    picture: Any, size: tuple[int, int] | None, channels: int, file: Path | str
) -> Conformed:
    """``picture`` as (H, W, ``channels``) uint8, resized to ``size`` (height, width) unless
    None; see the module docstring for the rule."""
    from PIL import Image

    if channels not in (1, 3):
        raise CnnlabError(f"{shown(file)}: {channels} channels requested; only 1 (grey) or 3 (RGB)")
    scaled = False
    if picture.mode in _SIXTEEN_BIT or (picture.mode == "I" and picture.format == "PNG"):
        wide = np.asarray(picture, dtype=np.uint32)
        picture = Image.fromarray(((wide + 128) // 257).astype(np.uint8), "L")
        scaled = True
    elif picture.mode in ("I", "F"):
        raise CnnlabError(
            f"{shown(file)}: 32-bit {'integer' if picture.mode == 'I' else 'float'} pixels "
            "are not supported; expected 8-bit or 16-bit grey, or 8-bit colour"
        )
    if picture.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        picture.mode == "P" and "transparency" in picture.info
    ):
        grey = is_grey(picture)
        rgba = picture.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        picture = Image.alpha_composite(black, rgba).convert("L" if grey else "RGB")
    picture = picture.convert("L" if channels == 1 else "RGB")
    resized = False
    if size is not None and picture.size != (size[1], size[0]):
        picture = picture.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        resized = True
    pixels = np.asarray(picture, dtype=np.uint8)
    return Conformed(pixels[..., None] if pixels.ndim == 2 else pixels, resized, scaled)


@dataclass(frozen=True)
class Decoded:
    """Pictures decoded to one tensor, and what was done to make them fit."""

    images: torch.Tensor
    resized: int
    converted: int
    scaled: int

    def provenance(self, image_size: int | None, channels: int | None) -> dict[str, Any]:
        """What a dataset records about the rule it applied (lands in run.json)."""
        _, c, h, w = self.images.shape
        return {
            "image_size": [h, w],
            "channels": c,
            "image_size_setting": image_size,
            "channels_setting": channels,
            "resize": RESIZE_RULE if image_size is not None else "none (as the files are)",
            "channel_rule": CHANNEL_RULE,
            "resized_images": self.resized,
            "converted_images": self.converted,
            "scaled_16bit_images": self.scaled,
        }


def decode_images(
    files: Sequence[Path],
    *,
    image_size: int | None,
    channels: int | None,
    what: str,
    workers: int | None = None,
) -> Decoded:
    """Every file decoded once into a uint8 (N, C, H, W) tensor, in a thread pool.

    Headers are read first (size, mode): with ``image_size`` None all pictures must share one
    size; with ``channels`` None the result is RGB if any picture is colour, else grey. The
    result may take at most :data:`MAX_DATASET_BYTES`. ``what`` names the data in errors.
    """
    if not files:
        raise CnnlabError(f"{what}: no images")
    workers = workers or min(32, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        headers = list(pool.map(_header, files))
        h, w = _target_size(files, headers, image_size, what)
        c = channels or (1 if all(grey for _, grey in headers) else 3)
        total = len(files) * c * h * w
        if total > MAX_DATASET_BYTES:
            raise CnnlabError(
                f"{what}: {len(files)} images of {h}x{w}x{c} take {total / 2**30:.1f} GiB as "
                f"uint8, more than the {MAX_DATASET_BYTES / 2**30:g} GiB cap; "
                "set data.image_size smaller or use fewer images"
            )
        out = np.empty((len(files), h, w, c), dtype=np.uint8)

        def fill(k: int) -> tuple[bool, bool]:
            with open_image(files[k]) as picture:
                done = conform(picture, (h, w), c, files[k])
            out[k] = done.pixels
            return done.resized, done.scaled

        flags = list(pool.map(fill, range(len(files))))
    converted = sum(grey != (c == 1) for _, grey in headers)
    return Decoded(
        torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(),
        resized=sum(r for r, _ in flags),
        converted=converted,
        scaled=sum(s for _, s in flags),
    )


def _header(file: Path) -> tuple[tuple[int, int], bool]:
    """(height, width) and whether the picture is grey, from the header only."""
    with open_image(file, load=False) as picture:
        return (picture.height, picture.width), is_grey(picture)


def _target_size(
    files: Sequence[Path],
    headers: list[tuple[tuple[int, int], bool]],
    image_size: int | None,
    what: str,
) -> tuple[int, int]:
    if image_size is not None:
        return image_size, image_size
    sizes = {size for size, _ in headers}
    if len(sizes) == 1:
        return next(iter(sizes))
    first = headers[0][0]
    k = next(i for i, (size, _) in enumerate(headers) if size != first)
    raise CnnlabError(
        f"{what}: images differ in size ({shown(files[0])} is {first[1]}x{first[0]}, "
        f"{shown(files[k])} is "
        f"{headers[k][0][1]}x{headers[k][0][0]}, {len(sizes)} sizes in all); "
        "set data.image_size to resize them all (e.g. --set data.image_size=64)"
    )


def conform_array(
    images: np.ndarray, image_size: int | None, channels: int | None, what: str
) -> Decoded:
    """uint8 (N, H, W, C) arrays (C 1 or 3) put through :func:`conform` where they need it."""
    from PIL import Image

    n, h, w, c = images.shape
    target = (h, w) if image_size is None else (image_size, image_size)
    want = channels or c
    if target == (h, w) and want == c:
        return Decoded(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2), 0, 0, 0)
    out = np.empty((n, *target, want), dtype=np.uint8)
    mode = "L" if c == 1 else "RGB"

    def fill(k: int) -> None:
        picture = Image.fromarray(images[k][..., 0] if c == 1 else images[k], mode)
        out[k] = conform(picture, target, want, f"{what}[{k}]").pixels

    with ThreadPoolExecutor(min(32, os.cpu_count() or 1)) as pool:
        list(pool.map(fill, range(n)))
    return Decoded(
        torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(),
        resized=n if target != (h, w) else 0,
        converted=n if want != c else 0,
        scaled=0,
    )
