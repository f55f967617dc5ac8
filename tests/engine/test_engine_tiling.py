"""Tile plan, blend tapers and grid-cell ownership, checked by hand-computed cases."""

import numpy as np
import pytest

from geomind_cli.engine import plan_tiles
from geomind_cli.engine.tiling import grid_owners, taper


def test_plan_hand_computed_500px():
    # 500 px -> padded to 512; stride 160: origins 0, 160, then the last shifted to 512 - 224 = 288.
    plan = plan_tiles(500, 500, tile_size=224, overlap=64)
    assert plan.stride == 160
    assert plan.ys.tolist() == [0, 160, 288]
    assert plan.padded_shape == (512, 512)


@pytest.mark.parametrize("height,width", [(1, 1), (7, 300), (224, 224), (225, 449), (1000, 37), (2049, 1601)])
def test_every_pixel_covered_and_origins_on_patch_grid(height, width):
    plan = plan_tiles(height, width)
    for origins, length in ((plan.ys, height), (plan.xs, width)):
        assert origins[0] == 0 and np.all(origins % 16 == 0) and np.all(np.diff(origins) > 0)
        covered = np.zeros(length, int)
        for o in origins:
            covered[o:o + 224] += 1
        assert covered.min() >= 1
        assert origins[-1] + 224 >= length and origins[-1] + 224 - length < max(16, 224 - length + 1)


def test_small_scene_single_tile():
    plan = plan_tiles(100, 50)
    assert len(plan) == 1 and plan.padded_shape == (224, 224)


def test_invalid_overlap():
    with pytest.raises(ValueError):
        plan_tiles(500, 500, overlap=60)
    with pytest.raises(ValueError):
        plan_tiles(500, 500, overlap=224)


def test_taper_is_partition_of_unity_where_overlap_is_exact():
    plan = plan_tiles(1000, 1000, overlap=64)  # origins 0,160,320,480,640,784
    total = np.zeros(1008)
    for i, o in enumerate(plan.ys):
        total[o:o + 224] += taper(plan, 0, i)
    # Between regular tiles (exact 64 px overlap) weights sum to 1; flat 1 at the scene border.
    assert np.allclose(total[:640], 1.0)
    assert np.all(total > 0.99)
    w0, w1 = taper(plan, 0, 0), taper(plan, 0, 1)
    assert w0[0] == 1.0 and w0[159] == 1.0 and w0[-1] < 0.01  # flat at the border, ramp only in the overlap
    assert w1[0] < 0.01 and np.all(w1[64:160] == 1.0)


def test_grid_owner_is_nearest_tile_centre():
    plan = plan_tiles(500, 500)  # tiles at 0, 160, 288; centres 112, 272, 400
    owners = grid_owners(plan, 0)
    centres = np.arange(32) * 16 + 8
    for cell, owner in enumerate(owners):
        candidates = [i for i, o in enumerate(plan.ys) if o <= cell * 16 < o + 224]
        best = min(candidates, key=lambda i: (abs(centres[cell] - (plan.ys[i] + 112)), i))
        assert owner == best
    assert owners.tolist() == sorted(owners.tolist())
    assert owners[11] == 0 and owners[12] == 1  # cell 11 centre 184: |184-112|=72 < |184-272|=88
