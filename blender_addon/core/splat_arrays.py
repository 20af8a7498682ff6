"""Preview splats (a `preview` message's arrays) → what the point preview draws (bpy-free):
positions, linear RGBA colours and disc radii, thinned to a point budget."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# A point is drawn as an opaque disc; a Gaussian of std σ falls to half its opacity at
# r = σ·sqrt(2 ln 2) ≈ 1.18σ, so a disc of that radius covers the part of the splat that reads as
# "solid" in the real render: bigger discs make the preview look bloated, smaller ones sparse.
RADIUS_PER_STD = math.sqrt(2.0 * math.log(2.0))
# Splats collapse to needles and flat discs during optimisation; a floor keeps them visible
# (world units; assets are about one unit across).
MIN_RADIUS = 0.002

# sRGB byte → linear float, for the FLOAT_COLOR attribute (stored linear, like every float colour
# in Blender). A 256-entry table is cheaper than the power function per splat.
_SRGB_TO_LINEAR = np.array(
    [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (i / 255 for i in range(256))],
    dtype=np.float32)


@dataclass
class PointArrays:
    positions: np.ndarray  # [N, 3] float32|float16
    rgba: np.ndarray       # [N·4] float32 linear, alpha = opacity
    radii: np.ndarray      # [N] float32


def point_arrays(positions, colors, opacities, scales, max_points: int) -> PointArrays:
    """positions [N, 3] float32|float16 world units; colors [N, 3|4] uint8 sRGB; opacities [N] uint8
    (0..255) or float (0..1); scales [N, 3] float per-axis standard deviations. More than
    `max_points` splats are thinned to an even, deterministic subset. Raises ValueError for arrays
    of the wrong shape, so a bad message never writes garbage."""
    positions, colors, opacities, scales = checked(positions, colors, opacities, scales)
    keep = subsample(len(positions), max_points)
    if keep is not None:
        positions, colors, opacities, scales = positions[keep], colors[keep], opacities[keep], scales[keep]
    return PointArrays(positions, rgba(colors, opacities), radii(scales))


def checked(positions, colors, opacities, scales) -> tuple[np.ndarray, ...]:
    """As numpy, shapes checked."""
    positions, colors, opacities, scales = (np.asarray(a) for a in (positions, colors, opacities, scales))
    n = len(positions)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must be [N, 3], got {positions.shape}")
    if colors.dtype != np.uint8 or colors.ndim != 2 or len(colors) != n or colors.shape[1] not in (3, 4):
        raise ValueError(f"colors must be uint8 [N={n}, 3|4], got {colors.dtype} {colors.shape}")
    if opacities.shape != (n,):
        raise ValueError(f"opacities must be [N={n}], got {opacities.shape}")
    if scales.shape != (n, 3):
        raise ValueError(f"scales must be [N={n}, 3], got {scales.shape}")
    return positions, colors, opacities, scales


def subsample(n: int, max_points: int) -> np.ndarray | None:
    """Indices [max_points] spread evenly over 0..n-1, or None when all n fit. A fixed stride
    rather than a random draw: the same n gives the same subset every tick (no flicker), and as
    the backend appends splats the kept ones shift only slightly."""
    if n <= max_points:
        return None
    return (np.arange(max_points, dtype=np.int64) * n) // max_points


def rgba(colors: np.ndarray, opacities: np.ndarray) -> np.ndarray:
    """colors [N, 3|4] uint8 sRGB + opacities [N] → [N·4] float32 linear RGBA, alpha = opacity
    (a colour's own alpha channel is ignored: opacity is the splat's)."""
    out = np.empty((len(colors), 4), np.float32)
    out[:, :3] = _SRGB_TO_LINEAR[colors[:, :3]]
    if opacities.dtype == np.uint8:
        out[:, 3] = opacities * np.float32(1 / 255)
    else:
        out[:, 3] = np.clip(opacities, 0.0, 1.0)
    return out.ravel()


def radii(scales: np.ndarray) -> np.ndarray:
    """scales [N, 3] per-axis std → [N] float32 disc radius: the mean of the two largest stds (a
    flat splat keeps the size of its disc, the thin axis does not shrink it) × RADIUS_PER_STD."""
    s = np.abs(scales.astype(np.float32))
    x, y, z = s[:, 0], s[:, 1], s[:, 2]  # column-wise: 25x faster than reductions along axis 1
    two_largest = (x + y + z - np.minimum(np.minimum(x, y), z)) * np.float32(0.5)
    return np.maximum(two_largest * np.float32(RADIUS_PER_STD), np.float32(MIN_RADIUS))
