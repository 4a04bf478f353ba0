"""Stamp augmentations of mmefm (rbda.learn.augment): symmetries, shifts, noise, reproducibility."""

from __future__ import annotations

import math

import pytest
import torch

from rbda.learn.augment import (MAX_SHIFT, N_DIHEDRAL, NOISE_STD, STRONG_VIEW_SHIFTS, dihedral, dihedral_one, integer_shift, strong_view,
                                subpixel_shift, weak_view)


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _asymmetric(n=2, size=21):
    """Stamps with no symmetry: every pixel a distinct value, channels distinct."""
    return torch.arange(n * 3 * size * size, dtype=torch.float32).reshape(n, 3, size, size)


def _gaussian_source(size=21, sigma=2.0, centre=(10.0, 10.0)):
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    return torch.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma ** 2))


def test_the_eight_symmetries_are_distinct_and_op_zero_is_the_identity():
    x = _asymmetric()
    images = [dihedral_one(x, op) for op in range(N_DIHEDRAL)]
    assert torch.equal(images[0], x)
    for a in range(N_DIHEDRAL):
        for b in range(a + 1, N_DIHEDRAL):
            assert not torch.equal(images[a], images[b]), (a, b)


def test_the_symmetries_form_a_group():
    """Closure: composing two of the 8 gives one of the 8; every one has an inverse among them."""
    x = _asymmetric()
    images = [dihedral_one(x, op) for op in range(N_DIHEDRAL)]

    def which(y):
        found = [op for op, image in enumerate(images) if torch.equal(y, image)]
        assert len(found) == 1
        return found[0]

    table = [[which(dihedral_one(dihedral_one(x, a), b)) for b in range(N_DIHEDRAL)] for a in range(N_DIHEDRAL)]
    for row in table:
        assert sorted(row) == list(range(N_DIHEDRAL))  # a Latin square: closure and cancellation
    assert all(0 in row for row in table)  # every element has an inverse


def test_dihedral_applies_each_stamps_own_symmetry_to_all_its_channels():
    x = _asymmetric(n=N_DIHEDRAL)
    ops = torch.tensor([3, 0, 7, 5, 1, 2, 6, 4])
    out = dihedral(x, ops)
    for i, op in enumerate(ops.tolist()):
        assert torch.equal(out[i], dihedral_one(x[i:i + 1], op)[0])
    assert torch.equal(dihedral(x, torch.zeros(N_DIHEDRAL, dtype=torch.long)), x)


def test_dihedral_keeps_the_pixel_values():
    x = torch.randn(4, 3, 21, 21)
    out = weak_view(x, _gen())
    for i in range(4):
        assert torch.equal(out[i].flatten().sort().values, x[i].flatten().sort().values)


def test_dihedral_needs_square_stamps():
    with pytest.raises(ValueError, match="square"):
        dihedral(torch.zeros(1, 3, 21, 20), torch.zeros(1, dtype=torch.long))


def test_integer_shift_copies_pixels_by_whole_pixel_offsets_per_stamp():
    x = _asymmetric(n=3)
    out = integer_shift(x, torch.tensor([[1, -1], [0, 0], [-2, 1]]))
    assert torch.equal(out[1], x[1])
    assert torch.equal(out[0, :, :-1, 1:], x[0, :, 1:, :-1])  # +1 column, -1 row
    assert torch.equal(out[0, :, :, 0], out[0, :, :, 1]) and torch.equal(out[0, :, -1, 1:], x[0, :, -1, :-1])  # edges
    assert torch.equal(out[2, :, 1:, :-2], x[2, :, :-1, 2:])  # -2 columns, +1 row
    assert set(out.unique().tolist()) <= set(x.unique().tolist())  # values copied, never interpolated
    channels_last = integer_shift(x.contiguous(memory_format=torch.channels_last), torch.tensor([[1, -1]] * 3))
    assert torch.equal(channels_last[0], out[0])


def test_every_method_setting_of_the_strong_views_shift_offers_its_choices():
    """A method with a strong view declares its own ``strong_view_shift`` (mmefm, cdac), whole pixels by
    default; the choices are strong_view's (the declarations are literals, so this ties them)."""
    from rbda.registry import REGISTRY

    declared = {m: d.setting("strong_view_shift") for m, d in REGISTRY.methods.items()
                if "strong_view_shift" in {s.name for s in d.settings}}
    assert {"mmefm", "cdac"} <= set(declared)
    for setting in declared.values():
        assert setting.choices == STRONG_VIEW_SHIFTS and setting.default == "integer"
    with pytest.raises(ValueError, match="shift must be one of"):
        strong_view(torch.zeros(1, 3, 21, 21), _gen(0), shift="bicubic")


def test_a_hot_pixel_survives_the_strong_view_unchanged_in_value():
    """The 1-pixel artefacts that make a detection bogus must not be smeared by the strong view."""
    x = torch.zeros(64, 3, 21, 21)
    x[:, 2, 10, 10] = 6.0
    out = strong_view(x, _gen(1), noise_std=0.0)
    for stamp in out:
        assert (stamp[2] == 6.0).sum() == 1 and (stamp != 0).sum() == 1
    assert {tuple(torch.nonzero(s[2])[0].tolist()) for s in out} == {(r, c) for r in (9, 10, 11) for c in (9, 10, 11)}
    smeared = strong_view(x, _gen(1), noise_std=0.0, shift="subpixel")  # the setting that interpolates
    assert (smeared[:, 2].amax(dim=(1, 2)) < 6.0).float().mean() > 0.9
    with pytest.raises(ValueError, match="shift"):
        strong_view(x, _gen(1), shift="bicubic")


def test_bilinear_shift_by_whole_pixels_moves_the_content_by_that_many_pixels():
    x = _gaussian_source().float()[None, None].repeat(1, 3, 1, 1)
    shifted = subpixel_shift(x, torch.tensor([[1.0, -1.0]]))
    # content moves +1 column, -1 row: interior pixels are exactly the neighbours'
    assert torch.allclose(shifted[0, :, 2:-2, 2:-2], x[0, :, 3:-1, 1:-3], atol=1e-5)
    assert torch.allclose(subpixel_shift(x, torch.zeros(1, 2)), x, atol=1e-6)


@pytest.mark.parametrize("shift", [(0.5, 0.0), (-0.3, 0.7), (1.0, 1.0), (-1.0, 0.25)])
def test_subpixel_shift_preserves_flux_and_moves_the_centroid(shift):
    x = _gaussian_source().float()[None, None].repeat(1, 3, 1, 1)
    out = subpixel_shift(x, torch.tensor([shift]))
    assert out.sum().item() == pytest.approx(x.sum().item(), rel=1e-3)
    image = out[0, 0].double()
    yy, xx = torch.meshgrid(torch.arange(21.0, dtype=torch.float64), torch.arange(21.0, dtype=torch.float64),
                            indexing="ij")
    centroid = ((image * xx).sum() / image.sum(), (image * yy).sum() / image.sum())
    assert centroid[0].item() == pytest.approx(10 + shift[0], abs=0.02)
    assert centroid[1].item() == pytest.approx(10 + shift[1], abs=0.02)


def test_strong_view_is_a_small_perturbation_of_a_symmetry():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 21, 21)
    out = strong_view(x, _gen(3))
    assert out.shape == x.shape and out.dtype == x.dtype
    # the noise alone has std NOISE_STD on top of a shifted symmetry of the stamp
    assert MAX_SHIFT == 1 and NOISE_STD == 0.1
    smooth = strong_view(torch.zeros_like(x), _gen(3))
    assert smooth.std().item() == pytest.approx(NOISE_STD, rel=0.05)
    assert math.isfinite(out.abs().max().item())


def test_views_are_deterministic_under_a_generator():
    x = torch.randn(16, 3, 21, 21)
    assert torch.equal(weak_view(x, _gen(5)), weak_view(x, _gen(5)))
    assert torch.equal(strong_view(x, _gen(5)), strong_view(x, _gen(5)))
    assert not torch.equal(strong_view(x, _gen(5)), strong_view(x, _gen(6)))
    ops_seen = set()
    for seed in range(10):
        out = weak_view(x, _gen(seed))
        for i in range(16):
            ops_seen |= {op for op in range(N_DIHEDRAL) if torch.equal(out[i], dihedral_one(x[i:i + 1], op)[0])}
    assert ops_seen == set(range(N_DIHEDRAL))  # every symmetry is drawn
