import numpy as np


def test_plot_grid_draws_one_column_per_image(fitted_detector, defects):
    import matplotlib

    matplotlib.use("Agg")
    from sklearn_uflow.plotting import plot_grid

    X, _, masks = defects
    maps, predicted = fitted_detector.anomaly_maps(X[:3]), fitted_detector.predict_masks(X[:3])
    figure = plot_grid(X[:3], maps, predicted, masks[:3])
    # rows: image, truth, map, mask; each panel shows its own image's data, maps and masks on one [0, 1] scale
    panels = np.array(figure.axes).reshape(4, 3)
    for column in range(3):
        shown = [np.asarray(ax.images[0].get_array()) for ax in panels[:, column]]
        np.testing.assert_array_equal(shown[0], X[column])
        np.testing.assert_array_equal(shown[1], masks[column].astype(float))
        np.testing.assert_array_equal(shown[2], maps[column])
        np.testing.assert_array_equal(shown[3], predicted[column].astype(float))
        assert all(ax.images[0].get_clim() == (0, 1) for ax in panels[1:, column])
    assert [ax.get_ylabel() for ax in panels[:, 0]] == ["image", "truth", "anomaly map", "mask"]
