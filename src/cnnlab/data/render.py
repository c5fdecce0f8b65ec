"""Vectorised line rasterisers: sub-pixel lines anywhere, and Pillow's ``ImageDraw.line``.

:func:`draw_strokes` draws K ideal lines (a rectangle of the line's length and width, centred
anywhere, at any angle) in whole tensors, each in a small window of the image: ``"antialias"``
shades each pixel by how much of it the rectangle covers, ``"sharp"`` lights the pixels whose
centre lies inside it (what a nearest-neighbour rotation of a drawn line gives). The other
functions render K lines at once from integer endpoints, with no per-line Python loop, as
Pillow does: one-pixel lines follow Bresenham's walk, wider lines fill the quadrilateral Pillow
builds for a wide line.
:func:`render_pillow` is the per-line reference the fast renderer is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

RENDERS = ("antialias", "sharp")
"""How :func:`render_segments` turns an ideal line into pixels."""


def segment_extent(
    lengths: np.ndarray, widths: np.ndarray, angles_deg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Half the extent (x, y) in px of the ideal line's rectangle at each angle."""
    theta = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    cos, sin = np.abs(np.round(np.cos(theta), 12)), np.abs(np.round(np.sin(theta), 12))
    half_l, half_w = np.asarray(lengths) / 2.0, np.asarray(widths) / 2.0
    return half_l * cos + half_w * sin, half_l * sin + half_w * cos


@dataclass(frozen=True)
class Strokes:
    """K lines drawn in small windows: ``intensity`` (K, W, W) uint8 0..255 and ``mask``
    (K, W, W) bool, each window's top-left pixel at (``left``, ``top``) of an S x S image."""

    intensity: np.ndarray
    mask: np.ndarray
    left: np.ndarray
    top: np.ndarray
    image_size: int

    def paste(self, windows: np.ndarray) -> np.ndarray:
        """(K, W, W, ...) window values -> (K, S, S, ...) images, zero outside the windows.

        Windows are pasted a whole group at a time, one group per window position (at most
        (S - W + 1)^2 of them), so the copies are plain slices.
        """
        k, w = windows.shape[:2]
        size = self.image_size
        out = np.zeros((k, size, size, *windows.shape[3:]), dtype=windows.dtype)
        key = self.top * size + self.left
        order = np.argsort(key, kind="stable")
        positions, starts = np.unique(key[order], return_index=True)
        for position, members in zip(positions, np.split(order, starts[1:]), strict=True):
            top, left = divmod(int(position), size)
            out[members, top : top + w, left : left + w] = windows[members]
        return out


def draw_strokes(
    cx: np.ndarray,
    cy: np.ndarray,
    angles_deg: np.ndarray,
    lengths: np.ndarray,
    widths: np.ndarray,
    image_size: int,
    render: str = "antialias",
) -> Strokes:
    """K ideal lines, each drawn in a window just large enough for any of them.

    A line is the rectangle ``lengths`` px long and ``widths`` px wide centred on (``cx``,
    ``cy``) (pixel-centre coordinates, sub-pixel), ``angles_deg`` counter-clockwise from +x as
    seen on screen, lying inside the image. The mask is the ideal line's pixels: those whose
    centre lies inside the rectangle, whatever the shading. ``"antialias"`` intensity is 255 x
    the pixel's box-filtered coverage, taken as the product of its coverage across and along
    the line (exact for lines on the pixel axes); ``"sharp"`` intensity is 255 on the mask.
    """
    if render not in RENDERS:
        raise ValueError(f"render must be one of {', '.join(RENDERS)}, got {render!r}")
    cx, cy = np.asarray(cx, dtype=np.float64), np.asarray(cy, dtype=np.float64)
    hx, hy = segment_extent(lengths, widths, angles_deg)
    # Shading reaches half a pixel beyond the rectangle, at most 0.71 px along x or y.
    reach = np.maximum(hx, hy) + 0.75
    size = int(min(image_size, np.ceil(2 * reach.max(initial=0)) + 1))
    left = np.clip(np.floor(cx - reach), 0, image_size - size).astype(np.int64)
    top = np.clip(np.floor(cy - reach), 0, image_size - size).astype(np.int64)
    theta = torch.from_numpy(np.deg2rad(np.asarray(angles_deg, dtype=np.float64)))
    ux, uy = torch.cos(theta).float(), -torch.sin(theta).float()  # screen y grows downwards
    span = torch.arange(size, dtype=torch.float32)
    dx = span[None, :] + torch.from_numpy((left - cx).astype(np.float32))[:, None]  # (K, W)
    dy = span[None, :] + torch.from_numpy((top - cy).astype(np.float32))[:, None]
    half_l = torch.from_numpy(np.asarray(lengths, dtype=np.float32) / 2)[:, None, None]
    half_w = torch.from_numpy(np.asarray(widths, dtype=np.float32) / 2)[:, None, None]
    # [k, y, x]: distance along the line and across it, from the line's centre
    along = dx[:, None, :] * ux[:, None, None] + dy[:, :, None] * uy[:, None, None]
    across = dx[:, None, :] * uy[:, None, None] - dy[:, :, None] * ux[:, None, None]
    along.abs_()
    across.abs_()
    mask = (along <= half_l) & (across <= half_w)
    if render == "sharp":
        intensity = mask.to(torch.uint8).mul_(255)
    else:
        cover = along.neg_().add_(half_l + 0.5).clamp_(0, 1)
        cover.mul_(across.neg_().add_(half_w + 0.5).clamp_(0, 1))
        intensity = cover.mul_(255).round_().to(torch.uint8)
    return Strokes(intensity.numpy(), mask.numpy(), left, top, image_size)


def render_segments(
    cx: np.ndarray,
    cy: np.ndarray,
    angles_deg: np.ndarray,
    lengths: np.ndarray,
    widths: np.ndarray,
    image_size: int,
    render: str = "antialias",
) -> tuple[np.ndarray, np.ndarray]:
    """K ideal lines as whole images: (intensity (K, S, S) uint8, mask (K, S, S) bool); see
    :func:`draw_strokes`."""
    strokes = draw_strokes(cx, cy, angles_deg, lengths, widths, image_size, render)
    return strokes.paste(strokes.intensity), strokes.paste(strokes.mask)


_STEP_EPS = 1e-9


def endpoints(
    lengths: np.ndarray, angles_deg: np.ndarray, image_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integer endpoints (x0, y0, x1, y1) of lines centred in the image.

    A line of ``length`` px spans ``length - 1`` px between its end pixels, at ``angle`` degrees
    counter-clockwise from +x as seen on screen (y grows downwards). Offsets are rounded to 1e-6
    before snapping half-up to the pixel grid, so a 90 deg line is exactly vertical.
    """
    half = (np.asarray(lengths, dtype=np.float64) - 1.0) / 2.0
    theta = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    ox = np.round(half * np.cos(theta), 6)
    oy = np.round(-half * np.sin(theta), 6)
    mid = (image_size - 1) / 2.0

    def snap(v: np.ndarray) -> np.ndarray:
        return np.floor(v + 0.5).astype(np.int64)

    return snap(mid - ox), snap(mid - oy), snap(mid + ox), snap(mid + oy)


def render_lines(
    x0: np.ndarray,
    y0: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
    widths: np.ndarray,
    image_size: int,
    antialias: bool = False,
) -> np.ndarray:
    """Render K lines: (K, S, S) bool masks, or float32 coverage in [0, 1] when ``antialias``."""
    x0, y0, x1, y1, widths = (np.asarray(a, dtype=np.int64) for a in (x0, y0, x1, y1, widths))
    if antialias:
        return _render_antialiased(x0, y0, x1, y1, widths, image_size)
    masks = np.zeros((x0.size, image_size, image_size), dtype=bool)
    thin = widths <= 1
    if thin.any():
        masks[thin] = _render_thin(x0[thin], y0[thin], x1[thin], y1[thin], image_size)
    if (~thin).any():
        wide = ~thin
        masks[wide] = _render_wide(x0[wide], y0[wide], x1[wide], y1[wide], widths[wide], image_size)
    return masks


def _render_thin(
    x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, size: int
) -> np.ndarray:
    """One-pixel lines by Bresenham's walk, all steps of all lines in one array operation."""
    dx, dy = x1 - x0, y1 - y0
    adx, ady = np.abs(dx), np.abs(dy)
    n = np.maximum(adx, ady)
    steps = np.arange(int(n.max(initial=0)) + 1)[None, :]  # (1, T)
    x_major = (adx >= ady)[:, None]
    major = np.maximum(n, 1)[:, None]
    minor_span = np.where(x_major, ady[:, None], adx[:, None])
    # Bresenham's choice of the minor coordinate: round(i * minor / major), halves rounded up.
    minor = (2 * steps * minor_span + major) // (2 * major)
    sx, sy = np.sign(dx)[:, None], np.sign(dy)[:, None]
    xs = x0[:, None] + sx * np.where(x_major, steps, minor)
    ys = y0[:, None] + sy * np.where(x_major, minor, steps)
    valid = steps <= n[:, None]
    valid &= (xs >= 0) & (xs < size) & (ys >= 0) & (ys < size)
    masks = np.zeros((x0.size, size, size), dtype=bool)
    k = np.broadcast_to(np.arange(x0.size)[:, None], xs.shape)
    masks[k[valid], ys[valid], xs[valid]] = True
    return masks


def _round_up(v: np.ndarray) -> np.ndarray:
    """Pillow's ROUND_UP: halves away from zero."""
    return (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int64)


def _round_down(v: np.ndarray) -> np.ndarray:
    """Pillow's ROUND_DOWN: halves towards zero."""
    return (np.sign(v) * np.ceil(np.abs(v) - 0.5)).astype(np.int64)


def _render_wide(
    x0: np.ndarray,
    y0: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
    widths: np.ndarray,
    size: int,
) -> np.ndarray:
    """Wide lines as Pillow draws them: a filled quadrilateral around the centre line."""
    dx, dy = (x1 - x0).astype(np.float64), (y1 - y0).astype(np.float64)
    hyp = np.maximum(np.hypot(dx, dy), _STEP_EPS)
    small = (widths - 1) / 2.0
    ratio_max = _round_up(small) / hyp
    ratio_min = _round_down(small) / hyp
    dxmin, dxmax = _round_down(ratio_min * dy), _round_down(ratio_max * dy)
    dymin, dymax = _round_down(ratio_min * dx), _round_down(ratio_max * dx)
    quad = np.stack(
        [
            np.stack([x0 - dxmin, y0 + dymax], -1),
            np.stack([x1 - dxmin, y1 + dymax], -1),
            np.stack([x1 + dxmax, y1 - dymin], -1),
            np.stack([x0 + dxmax, y0 - dymin], -1),
        ],
        axis=1,
    ).astype(np.float64)  # (K, 4, 2)
    masks = _fill_convex(quad, size)
    point = (dx == 0) & (dy == 0)
    if point.any():
        masks[point, y0[point], x0[point]] = True
    return masks


def _fill_convex(quad: np.ndarray, size: int) -> np.ndarray:
    """Fill convex polygons (K, V, 2) with integer vertices the way Pillow's scanline filler does.

    On each row, the span between the leftmost and rightmost edge crossings (float32, as in
    Pillow) is filled from the crossing rounded half-up to the one rounded half-down, and
    horizontal edges are drawn whole.
    """
    start = quad.astype(np.float32)
    end = np.roll(start, -1, axis=1)
    x0, y0 = start[..., 0, None], start[..., 1, None]  # (K, V, 1)
    x1, y1 = end[..., 0, None], end[..., 1, None]
    rows = np.arange(size, dtype=np.float32)[None, None, :]  # (1, 1, S)
    flat = y0 == y1
    slope = np.where(flat, np.float32(0), (x1 - x0) / np.where(flat, np.float32(1), y1 - y0))
    crossing = (rows - y0) * slope + x0  # (K, V, S)
    on_edge = (rows >= np.minimum(y0, y1)) & (rows <= np.maximum(y0, y1)) & ~flat
    left = np.where(on_edge, crossing, np.inf).min(axis=1)  # (K, S)
    right = np.where(on_edge, crossing, -np.inf).max(axis=1)
    hits = on_edge.any(axis=1)
    first = np.where(hits, _round_up(np.where(hits, left, 0)), size)
    last = np.where(hits, _round_down(np.where(hits, right, 0)), -1)
    # Horizontal edges are drawn as full rows of their own.
    on_flat = flat & (rows == y0)  # (K, V, S)
    flat_lo = np.where(on_flat, np.minimum(x0, x1), np.inf).min(axis=1)
    flat_hi = np.where(on_flat, np.maximum(x0, x1), -np.inf).max(axis=1)
    has_flat = on_flat.any(axis=1)
    cols = np.arange(size)[None, None, :]  # (1, 1, S) as x
    in_span = (cols >= first[..., None]) & (cols <= last[..., None])
    in_flat = has_flat[..., None] & (cols >= flat_lo[..., None]) & (cols <= flat_hi[..., None])
    return in_span | in_flat


def _render_antialiased(
    x0: np.ndarray,
    y0: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
    widths: np.ndarray,
    size: int,
) -> np.ndarray:
    """Coverage of each pixel by a line of the given width with flat ends, box-filtered."""
    grid = np.arange(size, dtype=np.float64)
    px, py = grid[None, None, :], grid[None, :, None]
    ax, ay = x0[:, None, None].astype(np.float64), y0[:, None, None].astype(np.float64)
    vx, vy = (
        (x1 - x0)[:, None, None].astype(np.float64),
        (y1 - y0)[:, None, None].astype(np.float64),
    )
    length = np.maximum(np.hypot(vx, vy), _STEP_EPS)
    ux, uy = vx / length, vy / length
    along = (px - ax) * ux + (py - ay) * uy  # distance along the line from the first end
    across = np.abs((px - ax) * uy - (py - ay) * ux)  # distance from the centre line
    half_w = widths[:, None, None] / 2.0
    cover_across = np.clip(half_w + 0.5 - across, 0.0, 1.0)
    cover_along = np.clip(np.minimum(along + 1.0, length + 1.0 - along), 0.0, 1.0)
    return (cover_across * cover_along).astype(np.float32)


def render_pillow(
    x0: np.ndarray,
    y0: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
    widths: np.ndarray,
    image_size: int,
) -> np.ndarray:
    """Reference: one ``ImageDraw.line`` call per line, (K, S, S) bool masks."""
    from PIL import Image, ImageDraw

    masks = np.zeros((len(x0), image_size, image_size), dtype=bool)
    for k, (a, b, c, d, w) in enumerate(zip(x0, y0, x1, y1, widths, strict=True)):
        canvas = Image.new("L", (image_size, image_size), 0)
        ImageDraw.Draw(canvas).line([(int(a), int(b)), (int(c), int(d))], fill=255, width=int(w))
        masks[k] = np.asarray(canvas) > 0
    return masks
