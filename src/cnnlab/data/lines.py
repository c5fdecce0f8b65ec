"""The Lines dataset: one straight line on black, with its four factors and its pixel mask.

Generator 2 (the default, ``position: anywhere``) puts each line's centre at a random sub-pixel
point wherever the whole line fits in the frame, as the study's own generators placed lines
across the frame, and shades its edges (``render: antialias``), so nearly every image is a
distinct picture; the split keeps identical pictures together, so no test image equals a
training image. ``position: centred`` keeps generator 1's layout: one Pillow stencil per class
at 49 whole-pixel shifts about the centre, split at random, where every test image is a copy of
a training image (kept to show what a memorised test split looks like). Everything is rendered
in whole tensors: 96,000 images take well under a second (JPEG storage, an option, takes more).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from cnnlab.data.dataset import (
    ImageDataset,
    Split,
    grouped_stratified_split,
    stratified_split,
)
from cnnlab.data.degrade import add_noise, jpeg_roundtrip
from cnnlab.data.identity import identity_groups
from cnnlab.data.render import RENDERS, draw_strokes, endpoints, render_lines, segment_extent
from cnnlab.errors import CnnlabError

GENERATOR_VERSION = "2.0"
"""Bumped whenever a change would alter the bytes generated for a given config and seed.
2.0: ``position`` (``anywhere``, the new default, or ``centred``: 1.0's layout, same images),
``render`` (replaces 1.0's ``antialias`` flag), ``jpeg_quality``; shifts stored as float32."""

POSITIONS = ("anywhere", "centred")

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "centred": {"position": "centred", "render": "sharp"},
    "sharp": {"render": "sharp"},
    "jpeg": {"render": "sharp", "jpeg_quality": 95},
    "noisy": {"noise": 20.0},
}
"""Named renderings of the same 96 classes, for ``cnnlab data lines --variant`` and transfer
tests: ``centred`` is generator 1.0's memorised layout; ``sharp`` hard-edged lines (the pixels a
nearest-neighbour rotation of a drawn line lights, as the study's generators rotated theirs);
``jpeg`` those lines stored as JPEG at quality 95 (the study's storage); ``noisy`` the default
with Gaussian noise of 20 grey levels."""

FACTORS = ("length", "width", "angle", "color")

NAMED_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "white": (255, 255, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
}


def parse_color(spec: str) -> tuple[int, int, int]:
    """A colour name from :data:`NAMED_COLORS` or ``#rrggbb`` -> an RGB triple."""
    key = spec.strip().lower()
    if key in NAMED_COLORS:
        return NAMED_COLORS[key]
    if len(key) == 7 and key.startswith("#"):
        try:
            rgb = tuple(int(key[i : i + 2], 16) for i in (1, 3, 5))
        except ValueError:
            pass
        else:
            return rgb  # type: ignore[return-value]
    raise CnnlabError(
        f"colors: {spec!r} is not a colour; expected one of {', '.join(NAMED_COLORS)} or #rrggbb"
    )


MAX_BYTES = 8 * 2**30
"""The most memory a generated dataset may take (images and masks): a typo's guard."""


@dataclass(frozen=True)
class LinesConfig:
    """Everything that defines a Lines dataset; the study's values are the defaults.

    Angles run from 0 up to (not including) 180 degrees in ``angle_step`` steps, counter-
    clockwise from +x as seen on screen. ``position``: ``anywhere`` puts the line's centre at a
    uniform random sub-pixel point wherever the whole line fits; ``centred`` moves it from the
    image centre by a random whole number of pixels in [-max_shift, max_shift] on each axis
    (generator 1.0). ``render``: ``antialias`` shades edge pixels by coverage, ``sharp`` lights
    the pixels whose centre lies on the line (``centred``: Pillow's ``ImageDraw.line``).
    ``noise`` is the standard deviation of Gaussian pixel noise on the 0..255 scale (0: none);
    ``jpeg_quality`` (1..100, 0: none) stores each image as JPEG and reads it back.
    """

    image_size: int = 28
    lengths: tuple[int, ...] = (7, 15)
    widths: tuple[int, ...] = (1, 3)
    angle_step: int = 15
    colors: tuple[str, ...] = ("red", "blue")
    position: str = "anywhere"
    render: str = "antialias"
    max_shift: int = 3
    noise: float = 0.0
    jpeg_quality: int = 0
    per_class: int = 1000
    test_fraction: float = 0.4
    seed: int = 0
    factor_order: tuple[str, ...] = field(default=FACTORS, init=False)

    def __post_init__(self) -> None:
        for name in ("lengths", "widths", "colors"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    @property
    def angles(self) -> tuple[int, ...]:
        return tuple(range(0, 180, self.angle_step))

    @property
    def rgb(self) -> np.ndarray:
        """(n_colors, 3) uint8 RGB values of :attr:`colors`."""
        return np.array([parse_color(c) for c in self.colors], dtype=np.uint8)

    @property
    def levels(self) -> dict[str, tuple[Any, ...]]:
        """The values each factor takes, in class-index order."""
        return {
            "length": self.lengths,
            "width": self.widths,
            "angle": self.angles,
            "color": self.colors,
        }

    @property
    def num_classes(self) -> int:
        return int(np.prod([len(v) for v in self.levels.values()]))

    # long: one check per option, in the order of the fields above, each naming its option
    def validate(self) -> None:
        """Refuse impossible requests before any work, naming the option and what is expected."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise CnnlabError(message)

        need(self.image_size >= 4, f"image_size: expected at least 4 px, got {self.image_size}")
        for name in ("lengths", "widths"):
            values = getattr(self, name)
            need(len(values) > 0, f"{name}: expected at least one value, got none")
            need(
                all(isinstance(v, int | np.integer) and v >= 1 for v in values),
                f"{name}: expected whole numbers of pixels >= 1, got {list(values)}",
            )
            need(len(set(values)) == len(values), f"{name}: values repeat in {list(values)}")
        need(
            isinstance(self.angle_step, int) and 1 <= self.angle_step <= 180,
            f"angle_step: expected a whole number of degrees in 1..180, got {self.angle_step}",
        )
        need(len(self.colors) > 0, "colors: expected at least one colour, got none")
        rgb = [parse_color(c) for c in self.colors]
        need(len(set(rgb)) == len(rgb), f"colors: two colours are the same in {list(self.colors)}")
        need(all(c != (0, 0, 0) for c in rgb), "colors: black lines on black are invisible")
        need(
            self.position in POSITIONS,
            f"position: expected one of {', '.join(POSITIONS)}, got {self.position!r}",
        )
        need(
            self.render in RENDERS,
            f"render: expected one of {', '.join(RENDERS)}, got {self.render!r}",
        )
        need(self.max_shift >= 0, f"max_shift: expected >= 0 px, got {self.max_shift}")
        need(self.noise >= 0, f"noise: expected a standard deviation >= 0, got {self.noise}")
        need(
            isinstance(self.jpeg_quality, int | np.integer) and 0 <= self.jpeg_quality <= 100,
            f"jpeg_quality: expected a whole number in 1..100 (0: none), got {self.jpeg_quality}",
        )
        need(self.per_class >= 2, f"per_class: expected at least 2 images, got {self.per_class}")
        classes = len(self.lengths) * len(self.widths) * len(self.colors) * (180 // self.angle_step)
        size = classes * self.per_class * self.image_size**2 * (3 + 1)  # RGB images and masks
        need(
            size <= MAX_BYTES,
            f"per_class/image_size: {classes} classes x {self.per_class} images of "
            f"{self.image_size} px would take {size / 2**30:,.1f} GiB in memory; at most "
            f"{MAX_BYTES // 2**30} GiB",
        )
        need(
            0 < self.test_fraction < 1,
            f"test_fraction: expected a number between 0 and 1, got {self.test_fraction}",
        )
        quota = self.per_class * self.test_fraction
        need(
            math.floor(quota) >= 1 and self.per_class - math.ceil(quota) >= 1,
            f"test_fraction: {self.test_fraction} of {self.per_class} images per class leaves "
            "some class without train or test images",
        )
        if self.position == "centred":
            # The line's extent from the image centre, worst case over angles, plus the shift.
            reach = (max(self.lengths) - 1) / 2 + (max(self.widths) - 1 + 1) // 2 + self.max_shift
            smallest = int(2 * reach + 2)
            need(
                smallest <= self.image_size,
                f"lengths/widths/max_shift: lines of length {max(self.lengths)} px and width "
                f"{max(self.widths)} px shifted by up to {self.max_shift} px need an image of at "
                f"least {smallest} px, but image_size is {self.image_size}",
            )
        else:
            shapes = np.array(list(itertools.product(self.lengths, self.widths, self.angles)))
            hx, hy = segment_extent(*shapes.T)
            smallest = math.ceil(2 * max(hx.max(), hy.max()) - 1e-9)
            need(
                smallest <= self.image_size,
                f"lengths/widths: lines of length {max(self.lengths)} px and width "
                f"{max(self.widths)} px at these angles need an image of at least {smallest} px, "
                f"but image_size is {self.image_size}",
            )

    def class_index(
        self, length_i: np.ndarray, width_i: np.ndarray, angle_i: np.ndarray, color_i: np.ndarray
    ) -> np.ndarray:
        """((length_i * n_widths + width_i) * n_angles + angle_i) * n_colors + color_i."""
        n_w, n_a, n_c = len(self.widths), len(self.angles), len(self.colors)
        return ((length_i * n_w + width_i) * n_a + angle_i) * n_c + color_i

    def factor_indices(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """The inverse of :meth:`class_index`: each factor's level index for each label."""
        n_w, n_a, n_c = len(self.widths), len(self.angles), len(self.colors)
        labels = np.asarray(labels)
        return {
            "length": labels // (n_c * n_a * n_w),
            "width": labels // (n_c * n_a) % n_w,
            "angle": labels // n_c % n_a,
            "color": labels % n_c,
        }

    def class_names(self) -> tuple[str, ...]:
        """Readable names in class-index order, e.g. ``len15_wid3_ang090_blue``."""
        return tuple(
            f"len{length}_wid{width}_ang{angle:03d}_{color}"
            for length, width, angle, color in itertools.product(*self.levels.values())
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("factor_order")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


@dataclass(frozen=True)
class LinesData:
    """A generated Lines dataset as NumPy arrays, in the layout of ``lines.npz``.

    ``images`` (N, S, S, 3) uint8; ``label`` (N,) class index; ``length``, ``width`` (px),
    ``angle`` (degrees), ``color`` (colour index); ``shift_x``, ``shift_y`` (float32 px, the line
    centre's offset from the image centre); ``mask`` (N, S, S) bool, the ideal line's pixels;
    ``split`` (N,) ``"train"`` or ``"test"``.
    """

    config: LinesConfig
    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.arrays["label"].shape[0])

    def to_dataset(self, provenance: dict[str, Any] | None = None) -> ImageDataset:
        """The in-memory :class:`ImageDataset`; factors are level indices (see ``levels``)."""
        a = self.arrays
        images = torch.from_numpy(a["images"]).permute(0, 3, 1, 2)  # a view, channels first
        labels = torch.from_numpy(a["label"])
        factors = {
            k: torch.from_numpy(v) for k, v in self.config.factor_indices(a["label"]).items()
        }
        masks = torch.from_numpy(a["mask"])

        def split(name: str) -> Split:
            index = torch.from_numpy(np.flatnonzero(a["split"] == name))
            return Split(
                images.index_select(0, index),  # one contiguous (N, C, H, W) copy
                labels[index],
                {k: v[index] for k, v in factors.items()},
                masks[index],
            )

        return ImageDataset(
            name="lines",
            train=split("train"),
            test=split("test"),
            class_names=self.config.class_names(),
            factor_levels=self.config.levels,
            provenance={"generator_version": GENERATOR_VERSION, **self.config.to_dict()}
            | (provenance or {}),
        )


def lines_config(variant: str = "default", **options: Any) -> LinesConfig:
    """The config of a named :data:`VARIANTS` rendering, with ``options`` on top."""
    if variant not in VARIANTS:
        raise CnnlabError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    return LinesConfig(**{**VARIANTS[variant], **options})


def generate_lines(config: LinesConfig | None = None) -> LinesData:
    """Generate the Lines dataset for ``config`` (the study's classes, generator 2 by default)."""
    config = config or LinesConfig()
    rng = np.random.default_rng(config.seed)
    label = np.repeat(np.arange(config.num_classes), config.per_class)
    idx = config.factor_indices(label)
    levels = config.levels
    length = np.asarray(levels["length"], dtype=np.int64)[idx["length"]]
    width = np.asarray(levels["width"], dtype=np.int64)[idx["width"]]
    angle = np.asarray(levels["angle"], dtype=np.int64)[idx["angle"]]
    place = _place_centred if config.position == "centred" else _place_anywhere
    images, mask, shift = place(config, rng, idx, length, width, angle)
    if config.noise > 0:
        images = add_noise(images, config.noise, rng)
    if config.jpeg_quality:
        images = jpeg_roundtrip(images, config.jpeg_quality)
    if config.position == "centred":
        is_test = stratified_split(label, config.test_fraction, config.seed)
    else:  # identical pictures stay together: no test image equals a training image
        groups = identity_groups(images)
        is_test = grouped_stratified_split(label, groups, config.test_fraction, config.seed)
    arrays = {
        "images": images,
        "label": label.astype(np.int64),
        "length": length,
        "width": width,
        "angle": angle,
        "color": idx["color"].astype(np.int64),
        "shift_x": shift[:, 0].astype(np.float32),
        "shift_y": shift[:, 1].astype(np.float32),
        "mask": mask,
        "split": np.where(is_test, "test", "train"),
    }
    return LinesData(config, arrays)


Placement = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(images (N, S, S, 3) uint8, masks (N, S, S) bool, centre offsets (N, 2) px)."""


def _place_anywhere(
    config: LinesConfig,
    rng: np.random.Generator,
    idx: dict[str, np.ndarray],
    length: np.ndarray,
    width: np.ndarray,
    angle: np.ndarray,
) -> Placement:
    """Each line centred at a uniform sub-pixel point wherever the whole line fits."""
    size = config.image_size
    hx, hy = segment_extent(length, width, angle)
    u = rng.random((length.size, 2))
    # Pixel centres are 0..S-1, so the frame runs from -0.5 to S - 0.5.
    cx = hx - 0.5 + u[:, 0] * (size - 2 * hx)
    cy = hy - 0.5 + u[:, 1] * (size - 2 * hy)
    strokes = draw_strokes(cx, cy, angle, length, width, size, config.render)
    images = strokes.paste(_colourise(strokes.intensity, idx["color"], config.rgb))
    centre = (size - 1) / 2
    return images, strokes.paste(strokes.mask), np.stack([cx - centre, cy - centre], axis=1)


def _colourise(intensity: np.ndarray, color: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(N, H, W) intensities 0..255, (N,) colour indices into ``palette`` (C, 3) -> (N, H, W, 3)
    uint8 pictures: a channel at 255 is the intensity itself, any other through a lookup."""
    out = np.zeros((*intensity.shape, 3), dtype=np.uint8)
    for c, rgb in enumerate(palette.astype(np.int64)):
        members = np.flatnonzero(color == c)
        part = intensity[members]
        for channel, value in enumerate(rgb):
            if value == 255:
                out[members, ..., channel] = part
            elif value:
                table = ((np.arange(256) * value + 127) // 255).astype(np.uint8)
                out[members, ..., channel] = table[part]
    return out


def _place_centred(
    config: LinesConfig,
    rng: np.random.Generator,
    idx: dict[str, np.ndarray],
    length: np.ndarray,
    width: np.ndarray,
    angle: np.ndarray,
) -> Placement:
    """Generator 1.0: one stencil per (length, width, angle) at whole-pixel shifts about the
    centre; every image is one of a few thousand pictures, gathered."""
    size = config.image_size
    shift = rng.integers(-config.max_shift, config.max_shift + 1, size=(length.size, 2))
    n_shift = 2 * config.max_shift + 1
    shape_id = (idx["length"] * len(config.widths) + idx["width"]) * len(config.angles) + idx[
        "angle"
    ]
    shift_id = (shift[:, 0] + config.max_shift) * n_shift + (shift[:, 1] + config.max_shift)
    stencil_id = shape_id * n_shift * n_shift + shift_id
    stencils = _render_stencils(config)  # (n_shapes * n_shift^2, S, S)
    # Colour every stencil once; images are then one gather of whole pictures.
    rgb = config.rgb[None, :, None, None, :]  # (1, C, 1, 1, 3)
    if config.render == "antialias":
        pictures = np.rint(stencils[:, None, :, :, None] * rgb).astype(np.uint8)
        stencil_masks = stencils >= 0.5
    else:
        pictures = stencils[:, None, :, :, None] * rgb  # bool * uint8 -> uint8
        stencil_masks = stencils
    pictures = pictures.reshape(-1, size, size, 3)
    images = pictures[stencil_id * len(config.colors) + idx["color"]]
    return images, stencil_masks[stencil_id], shift


def _render_stencils(config: LinesConfig) -> np.ndarray:
    """Every distinct line picture: shapes (length x width x angle) times shifts (dx, dy)."""
    shifts = np.arange(-config.max_shift, config.max_shift + 1)
    grid = np.array(
        list(itertools.product(config.lengths, config.widths, config.angles, shifts, shifts))
    )
    length, width, angle, dx, dy = grid.T
    x0, y0, x1, y1 = endpoints(length, angle, config.image_size)
    return render_lines(
        x0 + dx,
        y0 + dy,
        x1 + dx,
        y1 + dy,
        width,
        config.image_size,
        antialias=config.render == "antialias",
    )
