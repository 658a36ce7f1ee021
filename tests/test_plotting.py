def test_plot_grid_draws_one_column_per_image(fitted_detector, defects):
    import matplotlib

    matplotlib.use("Agg")
    from sklearn_uflow.plotting import plot_grid

    X, _, masks = defects
    figure = plot_grid(X[:3], fitted_detector.anomaly_maps(X[:3]), fitted_detector.predict_masks(X[:3]), masks[:3])
    assert len(figure.axes) == 4 * 3
    assert len(plot_grid(X[:2]).axes) == 2
