import numpy as np
import pytest

from sklearn_uflow.anomaly_map import smooth_maps


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.7, 12.0, (2.0, 0.5)])
def test_smooth_maps_is_a_truncated_gaussian_with_extended_edges(sigma, rng):
    maps = rng.random((2, 20, 31))
    sigma_rows, sigma_cols = np.broadcast_to(sigma, 2)

    def blur(line, sigma):  # 1-D Gaussian cut at 4 sigma, over an edge-extended copy
        radius = int(4 * sigma + 0.5)
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        return np.convolve(np.pad(line, radius, mode="edge"), kernel / kernel.sum(), mode="valid")

    expected = []
    for m in maps:  # along the rows' length (columns axis), then along the columns
        m = np.stack([blur(r, sigma_cols) for r in m])
        expected.append(np.stack([blur(c, sigma_rows) for c in m.T]).T)
    np.testing.assert_allclose(smooth_maps(maps, sigma), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(smooth_maps(maps, 0), maps)
