import numpy as np

from geomind_cli.noise import gaussian_field, tile_gaussian, tile_token_keys, tile_token_uniforms, uniform_field


def test_gaussian_field_is_standard_normal():
    z = gaussian_field(7, "diffusion/S1GRD", np.arange(256), np.arange(256), channels=2)
    assert z.shape == (2, 256, 256) and z.dtype == np.float32
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    # neighbouring pixels and channels are uncorrelated
    assert abs(np.corrcoef(z[0, :, :-1].ravel(), z[0, :, 1:].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(z[0].ravel(), z[1].ravel())[0, 1]) < 0.01


def test_uniforms_in_open_interval_and_flat():
    u = uniform_field(1, "tokens/LULC", np.arange(-50, 150), np.arange(300))
    assert u.min() > 0 and u.max() < 1
    hist, _ = np.histogram(u, bins=10, range=(0, 1))
    assert hist.min() > 0.9 * u.size / 10


def test_overlapping_tiles_share_noise_exactly():
    a, b = tile_gaussian(3, "diffusion/DEM", [(0, 0), (0, 160)], 224, 1)
    np.testing.assert_array_equal(a[:, :, 160:], b[:, :, :64])
    ua, ub = tile_token_uniforms(3, "tokens/DEM", [(0, 0), (160, 0)], 224)
    np.testing.assert_array_equal(ua.reshape(14, 14)[10:], ub.reshape(14, 14)[:4])


def test_seed_and_stream_change_the_field():
    base = gaussian_field(0, "s", np.arange(32), np.arange(32))
    assert not np.allclose(base, gaussian_field(1, "s", np.arange(32), np.arange(32)))
    assert not np.allclose(base, gaussian_field(0, "t", np.arange(32), np.arange(32)))
    np.testing.assert_array_equal(base, gaussian_field(0, "s", np.arange(32), np.arange(32)))


def test_token_keys_are_shared_in_overlaps_and_change_with_seed_and_stream():
    a, b = tile_token_keys(3, "tokens/DEM", [(0, 0), (0, 160)], 224)
    assert a.dtype == np.int64 and a.shape == (196,)
    np.testing.assert_array_equal(a.reshape(14, 14)[:, 10:], b.reshape(14, 14)[:, :4])
    assert len(np.unique(a)) == 196  # one key per position
    # reflect-padded tiles start at negative rows: patch (row 16, col 48) is (3, 0) in one tile and (0, 3) in the other
    c, d = tile_token_keys(3, "tokens/DEM", [(-32, 48), (16, 0)], 64)
    assert c.reshape(4, 4)[3, 0] == d.reshape(4, 4)[0, 3]
    np.testing.assert_array_equal(tile_token_keys(3, "tokens/DEM", [(0, 160)], 224)[0], b)  # whatever the batch
    for seed, stream in ((4, "tokens/DEM"), (3, "tokens/S1GRD")):
        assert not np.any(tile_token_keys(seed, stream, [(0, 0)], 224)[0] == a)
    bits = np.unpackbits(a.view(np.uint8))
    assert abs(bits.mean() - 0.5) < 0.02  # 64-bit keys use all their bits (196 * 64 bits)
