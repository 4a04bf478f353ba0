"""Image primitives for synthetic stamps: point sources, galaxies and artefacts.

All functions draw onto float64 arrays in place (or return new ones) on a
square grid of side ``size``; positions are (x, y) in pixels, with the stamp
centre at ((size - 1) / 2, (size - 1) / 2).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), each (size, size)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return x, y


def centre(size: int) -> float:
    return (size - 1) / 2.0


def gaussian_psf(size: int, x0: float, y0: float, sigma: float, flux: float,
                 ellipticity: float = 0.0, angle: float = 0.0) -> np.ndarray:
    """A Gaussian point source of total ``flux`` (optionally elongated)."""
    x, y = grid(size)
    dx, dy = x - x0, y - y0
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    sx, sy = sigma * (1 + ellipticity), sigma / (1 + ellipticity)
    profile = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return flux * profile / (2 * np.pi * sx * sy)


def galaxy(size: int, x0: float, y0: float, scale: float, flux: float, axis_ratio: float,
           angle: float) -> np.ndarray:
    """An exponential-profile galaxy of total ``flux`` and scale length ``scale``."""
    x, y = grid(size)
    dx, dy = x - x0, y - y0
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = dx * cos + dy * sin, (-dx * sin + dy * cos) / axis_ratio
    profile = np.exp(-np.hypot(u, v) / scale)
    return flux * profile / profile.sum()


def streak(size: int, x0: float, y0: float, length: float, angle: float, sigma: float,
           flux: float) -> np.ndarray:
    """A line segment of ``length`` through (x0, y0) blurred by a Gaussian PSF."""
    x, y = grid(size)
    dx, dy = x - x0, y - y0
    along = dx * np.cos(angle) + dy * np.sin(angle)
    across = -dx * np.sin(angle) + dy * np.cos(angle)
    beyond = np.clip(np.abs(along) - length / 2, 0, None)
    profile = np.exp(-0.5 * (across**2 + beyond**2) / sigma**2)
    return flux * profile / profile.sum()


def cosmic_ray(size: int, rng: np.random.Generator, x0: float, y0: float, peak: float) -> np.ndarray:
    """A sharp track of 1-5 pixels (no PSF blur), typical of a cosmic-ray hit."""
    image = np.zeros((size, size))
    length = int(rng.integers(1, 6))
    angle = rng.uniform(0, np.pi)
    for step in range(length):
        xi = int(round(x0 + step * np.cos(angle)))
        yi = int(round(y0 + step * np.sin(angle)))
        if 0 <= xi < size and 0 <= yi < size:
            image[yi, xi] += peak * rng.uniform(0.5, 1.0)
    return image


def bad_column(size: int, column: int, level: float, start: int = 0) -> np.ndarray:
    image = np.zeros((size, size))
    image[start:, column] = level
    return image


def spike(size: int, x0: float, y0: float, angle: float, width: float, level: float) -> np.ndarray:
    """A diffraction spike: a thin bright line through a bright star, fading outwards."""
    x, y = grid(size)
    dx, dy = x - x0, y - y0
    along = dx * np.cos(angle) + dy * np.sin(angle)
    across = -dx * np.sin(angle) + dy * np.cos(angle)
    return level * np.exp(-0.5 * (across / width) ** 2) * np.exp(-np.abs(along) / (size / 2))


def saturate(image: np.ndarray, level: float) -> np.ndarray:
    """Clip at a saturation level (the flat top of a burnt-in star)."""
    return np.minimum(image, level)
