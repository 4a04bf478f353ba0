"""Augmentations of alert stamps for consistency training (``mmefm``).

Only transformations that leave a real/bogus label unchanged are used: the
sky has no preferred orientation on a stamp, so the 8 rotations and
reflections of the square (the dihedral group D4) are exact symmetries; a
shift by whole pixels models centring errors of the alert position and keeps
every pixel value (a hot pixel, cosmic ray or bad column -- the 1-pixel
artefacts that make a detection bogus -- moves intact; the bilinear sub-pixel
shift, a setting, smears it over four pixels); Gaussian noise models a
different noise realisation. No colour (channel-mixing or
intensity) operations: the three channels are template, science and
difference, whose relation *is* the signal.

Every function applies the same transformation to the three channels of a
stamp and a different, randomly drawn one to each stamp of a batch; random
draws come from a ``torch.Generator`` only, so a run is reproducible and
resumable. Stamps are float tensors (N, C, H, W), normalised per channel to
mean 0 and std 1 (docs/method.md section 2), so the noise level is in units
of the stamp's own standard deviation.

* :func:`dihedral` -- one of the 8 symmetries of the square per stamp.
* :func:`integer_shift` -- a translation by whole pixels (edges extended).
* :func:`subpixel_shift` -- a bilinear translation by up to ``max_shift`` px.
* :func:`weak_view`, :func:`strong_view` -- the two views of ``mmefm``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


#: Number of symmetries of the square: rotations by k * 90 degrees, each with or without a reflection.
N_DIHEDRAL = 8
#: Largest translation of the strong view, in pixels (per axis).
MAX_SHIFT = 1
#: Standard deviation of the strong view's Gaussian noise, in units of the (normalised) stamp's std.
NOISE_STD = 0.1
#: How the strong view shifts a stamp (:func:`strong_view`; the ``strong_view_shift`` setting of the
#: methods that use it): by whole pixels (values kept) or bilinear sub-pixel (values smeared).
STRONG_VIEW_SHIFTS = ("integer", "subpixel")


def dihedral_one(x: torch.Tensor, op: int) -> torch.Tensor:
    """Symmetry ``op`` in 0..7 of every stamp of ``x``: a left-right reflection when ``op >= 4``,
    then a rotation by ``op % 4`` quarter turns. ``op = 0`` is the identity."""
    if not 0 <= op < N_DIHEDRAL:
        raise ValueError(f"dihedral op must be in 0..7, got {op}")
    if op >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, op % 4, dims=(-2, -1))


def dihedral(x: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
    """Stamp ``i`` of ``x`` (N, C, H, W; square) transformed by symmetry ``ops[i]`` (N ints in 0..7)."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"dihedral symmetries need square stamps, got {tuple(x.shape[-2:])}")
    variants = torch.stack([dihedral_one(x, op) for op in range(N_DIHEDRAL)])  # (8, N, C, H, W)
    return variants[ops.to(x.device), torch.arange(x.shape[0], device=x.device)]


def subpixel_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Stamp ``i`` translated by ``shift[i] = (dx, dy)`` pixels (bilinear interpolation, edges extended).

    The content moves by (+dx, +dy) in (column, row) direction. Flux is kept up
    to what crosses the border (nothing, for a centred source).
    """
    n, _, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    # output pixel at p samples the input at p - shift; normalised coordinates span 2 over w (h) pixels
    theta[:, 0, 2] = -2 * shift[:, 0].to(x) / w
    theta[:, 1, 2] = -2 * shift[:, 1].to(x) / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def integer_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Stamp ``i`` translated by ``shift[i] = (dx, dy)`` whole pixels (integers), edges extended.

    The content moves by (+dx, +dy) in (column, row) direction; every output pixel is a copy of an
    input pixel (the pixel ``dx`` columns left and ``dy`` rows up, clamped to the stamp), so pixel
    values are kept exactly.
    """
    n, _, h, w = x.shape
    shift = shift.to(device=x.device, dtype=torch.long)
    rows = (torch.arange(h, device=x.device)[None, :] - shift[:, 1:2]).clamp(0, h - 1)  # (N, H)
    cols = (torch.arange(w, device=x.device)[None, :] - shift[:, 0:1]).clamp(0, w - 1)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # (N, H, W, C) -> (N, C, H, W)
    return x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_ops(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` symmetries drawn uniformly from the 8."""
    return torch.randint(0, N_DIHEDRAL, (n,), generator=generator, device=generator.device)


def weak_view(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The weak view: one of the 8 symmetries of the square per stamp (exact; no interpolation)."""
    return dihedral(x, random_ops(x.shape[0], generator))


def strong_view(x: torch.Tensor, generator: torch.Generator, max_shift: int = MAX_SHIFT,
                noise_std: float = NOISE_STD, shift: str = "integer") -> torch.Tensor:
    """The strong view: a symmetry, then a shift per axis, then Gaussian noise of std ``noise_std``.

    ``shift``: ``integer`` (whole pixels, uniform in ``-max_shift..max_shift``; pixel values kept) or
    ``subpixel`` (bilinear, uniform in ``[-max_shift, max_shift]``; values interpolated).
    """
    if shift not in STRONG_VIEW_SHIFTS:
        raise ValueError(f"shift must be one of {STRONG_VIEW_SHIFTS}, got {shift!r}")
    n = x.shape[0]
    x = dihedral(x, random_ops(n, generator))
    if shift == "integer":
        x = integer_shift(x, torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator,
                                           device=generator.device))
    else:
        x = subpixel_shift(x, (torch.rand(n, 2, generator=generator, device=generator.device) * 2 - 1) * max_shift)
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    return x + noise_std * noise


def augment_seeds(iterations: int, generator: torch.Generator) -> torch.Tensor:
    """One seed per iteration of an epoch for its random views, drawn from the loop's batch
    generator (so a resumed run draws the same views): a plan entry of the methods that augment."""
    return torch.randint(0, 2**62, (iterations,), generator=generator, device=generator.device).cpu()
