import numpy as np

from geomind_cli.noise import gaussian_field, tile_gaussian, tile_token_uniforms, uniform_field


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
