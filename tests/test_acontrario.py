"""The a contrario segmentation against hand computations, a literal
re-implementation of the paper's procedures, and its null calibration."""

import mpmath
import numpy as np
import pytest
from scipy import ndimage, stats

from sklearn_uflow import ACotrarioSegmenter
from sklearn_uflow._nfa_law import POLYOMINO_ALPHA, POLYOMINO_BETA
from sklearn_uflow.acontrario import (
    DELINEATION_SHARE,
    NullModel,
    component_tree,
    delineate,
    fit_null,
    log10_chi2_sf,
    log10_nfa_ceiling,
    log10_number_of_tests,
    log_nfa_maps,
    significant_regions,
)
from sklearn_uflow.anomaly_map import smoothed_anomaly_maps

LITE0_LATENTS = [(30, 64, 64), (30, 32, 32), (56, 16, 16)]


# --------------------------------------------------------------- chi-square tail
@pytest.mark.parametrize("df", [1, 2, 30, 56, 816])
def test_chi2_tail_matches_mpmath_everywhere(df):
    x = np.concatenate([np.linspace(0, 3 * df, 13), df + np.geomspace(1, 2e5, 25)])
    expected = [float(mpmath.log10(mpmath.gammainc(df / 2, t / 2, regularized=True))) for t in x]
    np.testing.assert_allclose(log10_chi2_sf(x, df), expected, rtol=1e-9, atol=1e-12)


def test_chi2_tail_is_never_significant_below_the_median():
    """The Chernoff bound of the reference code makes small values
    significant; the exact tail keeps them near log10(1)."""
    df = 30
    x = np.linspace(0, stats.chi2.median(df), 50)
    assert np.all(log10_chi2_sf(x, df) >= np.log10(0.5) - 1e-12)


# -------------------------------------------------------------- number of tests
def test_number_of_tests_matches_direct_count_and_budget_adds_to_one():
    alpha, beta = mpmath.mpf(POLYOMINO_ALPHA), mpmath.mpf(POLYOMINO_BETA)
    sizes = (4096, 1024, 256)
    total = sum(sizes)
    for r in (1, 30, 4096):
        direct = total * sizes[0] * alpha * beta**r / r
        assert log10_number_of_tests(r, sizes[0], total) == pytest.approx(float(mpmath.log10(direct)), rel=1e-12)
    # Every region of every size of every scale gets 1 / N_T of the budget:
    # the shares of all (at most N_s * ALPHA * BETA**r / r) regions add to 1.
    budget = sum(
        mpmath.fsum(n * alpha * beta**r / r / mpmath.power(10, mpmath.mpf(float(log10_number_of_tests(r, n, total))))
                    for r in range(1, n + 1))
        for n in sizes
    )
    assert float(budget) == pytest.approx(1.0, rel=1e-9)


# ----------------------------------------------------------------- hand-made tree
def _hand_image(saddle, peak_b, shoulder_b):
    u = np.ones((5, 5))
    u[1, 1] = u[1, 2] = u[2, 1] = 20.0  # peak A, 3 pixels
    u[2, 2] = u[3, 2] = saddle  # a 2-pixel plateau joining the peaks
    u[2, 3], u[3, 3] = shoulder_b, peak_b  # peak B on a shoulder
    return u


def test_component_tree_of_hand_image():
    tree = component_tree(_hand_image(saddle=6, peak_b=12, shoulder_b=10))
    nodes = {float(level): i for i, level in enumerate(tree.level)}
    assert sorted(nodes) == [1, 6, 10, 12, 20]
    area = {level: int(tree.area[i]) for level, i in nodes.items()}
    assert area == {1: 25, 6: 7, 10: 2, 12: 1, 20: 3}
    parent = {level: float(tree.level[tree.parent[i]]) for level, i in nodes.items()}
    assert parent == {1: 1, 6: 1, 10: 6, 12: 10, 20: 6}


def _hand_log_nfa(area, level):
    # chi2 with 2 degrees of freedom: log10 P(chi2 >= l) = -l / (2 ln 10).
    return float(log10_number_of_tests(area, 25, 25)) - area * level / (2 * np.log(10))


def test_prune_keeps_most_significant_node_of_branch_and_no_merge():
    u = _hand_image(saddle=6, peak_b=12, shoulder_b=10)
    # log10 NFA by node (area, level), by hand: log10 N_T(r) = 2.29682 +
    # 0.608801 r - log10 r; root (25, 1) 10.690, saddle (7, 6) -3.407,
    # A (3, 20) -9.383, B' (2, 10) -1.130, B (1, 12) 0.300.
    nfa = {name: _hand_log_nfa(*node) for name, node in
           {"root": (25, 1), "saddle": (7, 6), "A": (3, 20), "B'": (2, 10), "B": (1, 12)}.items()}
    assert nfa["B'"] < nfa["B"]  # procedure 1 keeps B' on the branch [B, B']
    assert nfa["saddle"] > nfa["A"]  # procedure 2: A is more significant, no merge
    labels, log_nfa = significant_regions(u, 2)
    expected = np.zeros((5, 5), int)
    expected[1, 1] = expected[1, 2] = expected[2, 1] = 1
    expected[2, 3] = expected[3, 3] = 2
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(log_nfa, [nfa["A"], nfa["B'"]])
    np.testing.assert_allclose(log_nfa, [-9.3827, -1.1296], atol=1e-4)
    np.testing.assert_allclose([nfa["root"], nfa["saddle"], nfa["B"]], [10.690, -3.407, 0.300], atol=1e-3)


def test_merge_replaces_leaves_by_a_more_significant_parent():
    u = _hand_image(saddle=15, peak_b=18, shoulder_b=16)
    nfa = {name: _hand_log_nfa(*node) for name, node in
           {"root": (25, 1), "saddle": (7, 15), "A": (3, 20), "B'": (2, 16), "B": (1, 18)}.items()}
    assert nfa["B'"] < nfa["B"]  # procedure 1 keeps B'
    assert nfa["saddle"] <= min(nfa["A"], nfa["B'"])  # procedure 2 merges A and B' into the saddle
    assert nfa["saddle"] < nfa["root"]  # procedure 1 on [saddle, root] keeps the saddle
    labels, log_nfa = significant_regions(u, 2)
    expected = np.zeros((5, 5), int)
    expected[1, 1] = expected[1, 2] = expected[2, 1] = 1
    expected[2, 2] = expected[3, 2] = expected[2, 3] = expected[3, 3] = 1
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(log_nfa, [nfa["saddle"]])


# --------------------------------------------- literal re-implementation of the paper
def _reference_regions(u, df):
    """Build the tree level by level with scipy.ndimage.label and run the
    paper's procedures literally (procedure 1, then 2, until stable)."""
    levels = np.unique(u)[::-1]
    nodes, parent_of, pixels_of = [], {}, {}
    owner_at_level = {}
    structure = ndimage.generate_binary_structure(2, 1)
    for level in levels:
        lab, n = ndimage.label(u >= level, structure=structure)
        owner_at_level[level] = lab
        for k in range(1, n + 1):
            comp = lab == k
            if np.isclose(u[comp].min(), level, rtol=0, atol=0):
                nodes.append((level, k))
                pixels_of[(level, k)] = comp
    for level, k in nodes:  # parent: the component at the next lower node level
        comp = pixels_of[(level, k)]
        lower = [lv for lv in levels if lv < level]
        for lv in lower:
            lab_k = owner_at_level[lv][comp][0]
            if (lv, lab_k) in pixels_of:
                parent_of[(level, k)] = (lv, lab_k)
                break
    n_pix = u.size
    log_pfa = {n: float(np.log10(n_pix * n_pix * 0.316915 * 4.062570 ** pixels_of[n].sum() / pixels_of[n].sum()))
               + pixels_of[n].sum() * float(stats.chi2.logsf(n[0], df) / np.log(10)) for n in nodes}
    children = {n: [c for c, p in parent_of.items() if p == n] for n in nodes}

    def remove(node):  # splice a node out, attaching its children to its parent
        p = parent_of.pop(node, None)
        for c in children[node]:
            if p is None:
                parent_of.pop(c)
            else:
                parent_of[c] = p
                children[p].append(c)
        if p is not None:
            children[p].remove(node)
        del children[node]

    def branch(leaf):
        chain = [leaf]
        while chain[-1] in parent_of and len(children[parent_of[chain[-1]]]) == 1:
            chain.append(parent_of[chain[-1]])
        return chain

    def prune():
        for leaf in [n for n in children if not children[n]]:
            chain = branch(leaf)
            keep = chain[int(np.argmin([log_pfa[n] for n in chain]))]
            for n in chain:
                if n != keep:
                    remove(n)

    def merge():
        merged = False
        for b in [n for n in children if len(children[n]) > 1]:
            if b not in children or any(children[c] for c in children[b]):
                continue
            if log_pfa[b] <= min(log_pfa[c] for c in children[b]):
                for c in list(children[b]):
                    remove(c)
                merged = True
        return merged

    prune()
    while merge():
        prune()
    leaves = [n for n in children if not children[n]]
    return sorted((round(log_pfa[n], 9), tuple(np.flatnonzero(pixels_of[n]))) for n in leaves)


@pytest.mark.parametrize("seed", range(12))
def test_vectorised_procedures_match_literal_reimplementation(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(3, 9, size=2))
    df = int(rng.integers(1, 6))
    u = (rng.standard_normal((df, *shape)) ** 2).sum(0)
    if seed % 3 == 0:
        u = np.round(u, 0)  # plateaus
    labels, log_pfa = significant_regions(u, df)
    got = sorted(
        (round(float(v), 9), tuple(np.flatnonzero(labels.ravel() == k + 1))) for k, v in enumerate(log_pfa)
    )
    assert got == _reference_regions(u, df)


# ------------------------------------------------------------------ calibration
def _count_detections(latents, epsilons):
    """Regions with NFA <= epsilon per image, summed over scales (an upper
    bound of the regions of the merged mask), for each epsilon."""
    total = sum(h * w for _, h, w in LITE0_LATENTS)
    counts = np.zeros((len(epsilons), len(latents[0])), int)
    for z in latents:
        for i, zi in enumerate(z):
            _, log_nfa = significant_regions((zi.astype(np.float64) ** 2).sum(0), zi.shape[0], total)
            counts[:, i] += [int(np.sum(log_nfa <= np.log10(epsilon))) for epsilon in epsilons]
    return counts


def _null_latents(n, rng, scale=1.0):
    return [scale * rng.standard_normal((n, *s), dtype=np.float32) for s in LITE0_LATENTS]


def test_null_calibration_on_pure_noise():
    """Over 1000 images of N(0, 1) latents, at most epsilon regions per image on average, at each epsilon."""
    rng = np.random.default_rng(0)
    epsilons = [1.0, 0.1]
    counts = np.concatenate([_count_detections(_null_latents(100, rng), epsilons) for _ in range(10)], axis=1)
    assert np.all(counts.mean(axis=1) <= epsilons), counts.mean(axis=1)


MSCAIT_LATENTS = [(816, 28, 28), (192, 14, 14)]


@pytest.mark.parametrize("shapes, size", [(LITE0_LATENTS, (256, 256)), (MSCAIT_LATENTS, (224, 224))],
                         ids=["lite0", "mscait"])
def test_masks_are_calibrated_on_pure_noise(shapes, size):
    """What a user gets: the masks' connected regions, over 1000 images of
    N(0, 1) latents, number at most epsilon per image on average; latents
    scaled by 0.9 give none."""
    rng = np.random.default_rng(0)
    seg = ACotrarioSegmenter(shapes, output_size=size, nfa_null="theory", calibration="none")
    seg.fit_latents([rng.standard_normal((50, *s), dtype=np.float32) for s in shapes])
    regions = {1.0: [], 0.1: []}
    for _ in range(10):
        log_nfa = seg.log_nfa_of_latents([rng.standard_normal((100, *s), dtype=np.float32) for s in shapes])
        for epsilon, counts in regions.items():
            counts += [ndimage.label(m)[1] for m in log_nfa <= np.log10(epsilon)]
    for epsilon, counts in regions.items():
        assert np.mean(counts) <= epsilon, (epsilon, np.mean(counts))
    small = seg.log_nfa_of_latents([0.9 * rng.standard_normal((50, *s), dtype=np.float32) for s in shapes])
    assert np.all(small > 0)


def _literal_delineation(log_nfa, anomaly, level, ceiling):
    """delineate() written out image by image and component by component."""
    out = np.full(anomaly.shape, ceiling)
    for image, (trees, values) in enumerate(zip(log_nfa, anomaly)):
        components, n = ndimage.label(values >= level)
        for k in range(1, n + 1):
            inside = components == k
            nfa = trees[inside].min()
            height = np.median(values[inside & (trees == nfa)])
            # a share of the way from level to height in evidence, -log(1 - map)
            evidence = -np.log1p(-values)
            cut = -np.log1p(-level) + DELINEATION_SHARE * (-np.log1p(-height) + np.log1p(-level))
            out[image][inside & (evidence >= cut)] = nfa
    return out


@pytest.mark.parametrize("seed", range(5))
def test_delineation_matches_literal_reimplementation(seed):
    rng = np.random.default_rng(seed)
    anomaly = ndimage.gaussian_filter(rng.random((3, 40, 50)), (0, 2, 2))
    # blocks of equal log10 NFA (regions), ties between them, none above the ceiling
    trees = np.minimum(np.round(ndimage.zoom(rng.normal(0, 3, (3, 10, 10)), (1, 4, 5), order=0), 1), 4.0)
    level = float(np.quantile(anomaly, 0.7))
    np.testing.assert_array_equal(delineate(trees, anomaly, level, 4.0),
                                  _literal_delineation(trees, anomaly, level, 4.0))


def test_textured_blob_is_one_region():
    """A defect whose interior has several peaks comes back whole, as one
    region with its outline, which the trees' regions miss."""
    rng = np.random.default_rng(7)
    seg = ACotrarioSegmenter(LITE0_LATENTS, output_size=(256, 256))
    seg.fit_latents(_null_latents(20, rng))
    yy, xx = np.mgrid[:256, :256] + 0.5
    blob = (yy - 120) ** 2 + (xx - 140) ** 2 <= 40**2
    latents = _null_latents(1, rng)
    for z in latents:
        cells = z.shape[-1]
        y, x = (np.mgrid[:cells, :cells] + 0.5) * 256 / cells
        inside = (y - 120) ** 2 + (x - 140) ** 2 <= 40**2
        texture = 1.0 + 0.6 * np.sin(y / 6.0) * np.sin(x / 6.0)  # several peaks and dips
        z[0, :, inside] += (1.2 * texture)[inside][:, None]
    rows = np.concatenate([z.reshape(1, -1) for z in latents], axis=1)
    masks = seg.predict_masks(rows)[0]
    assert ndimage.label(masks)[1] == 1
    assert (masks & blob).sum() / (masks | blob).sum() >= 0.8
    tree = seg.set_params(delineation="tree").predict_masks(rows)[0]
    assert (tree & blob).sum() / (tree | blob).sum() < 0.8


def test_small_latents_are_not_anomalous():
    rng = np.random.default_rng(1)
    maps = log_nfa_maps(_null_latents(50, rng, scale=0.9), size=(64, 64))
    assert np.all(maps > 0)
    assert maps.max() == log10_nfa_ceiling([h * w for _, h, w in LITE0_LATENTS])


def test_planted_block_is_found():
    rng = np.random.default_rng(2)
    latents = _null_latents(10, rng)
    block = np.zeros((16, 16), bool)
    block[5:11, 4:9] = True  # 30 pixels of the coarse scale
    latents[2][:, :, block] += 1.5
    masks = log_nfa_maps(latents, size=(16, 16)) <= 0
    iou = (masks & block).sum((1, 2)) / (masks | block).sum((1, 2))
    assert np.all(iou > 0.5), iou  # found in every image
    assert iou.mean() >= 0.8, iou  # and delineated


# ------------------------------------------------------------------- estimator
def test_segmenter_rows_and_maps_agree_with_function():
    rng = np.random.default_rng(3)
    shapes = [(8, 8, 8), (16, 4, 4)]
    latents = [rng.standard_normal((3, *s)) for s in shapes]
    latents[0][1, :, 2:5, 2:5] += 3
    rows = np.concatenate([z.reshape(3, -1) for z in latents], axis=1)
    seg = ACotrarioSegmenter(latent_shapes=shapes, output_size=(16, 16), nfa_null="theory", delineation="tree",
                             calibration="none").fit(rows)
    np.testing.assert_array_equal(seg.log_nfa_maps(rows), log_nfa_maps(latents, (16, 16)))
    trees = seg.log_nfa_maps(rows)
    seg.set_params(delineation="map")
    maps = smoothed_anomaly_maps(latents, (16, 16))
    np.testing.assert_array_equal(seg.log_nfa_maps(rows), delineate(trees, maps, seg.map_level_, seg.log_nfa_ceiling_))
    np.testing.assert_array_equal(seg.log_nfa_of_latents(latents), seg.log_nfa_maps(rows))
    assert seg.transform(rows).shape == (3, 256)
    masks = seg.predict_masks(rows)
    assert masks[1].any() and not masks[0].any()
    assert seg.set_params(epsilon=1e-300).predict_masks(rows).sum() <= masks.sum()


def test_segmenter_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="latent_shapes"):
        ACotrarioSegmenter(latent_shapes=[(2, 3, 3)]).fit(np.zeros((2, 10)))


# ----------------------------------------------------------- fitted null model
def _correlated_latents(n, rng, channels=16, size=32):
    """Latents that a real flow leaves: channels mixed, neighbours smoothed."""
    z = rng.standard_normal((n, channels, size, size))
    z = ndimage.gaussian_filter(z, sigma=(0, 0, 1.5, 1.5)) * 3.0
    mixing = np.eye(channels) + 0.5
    return np.einsum("dc,nchw->ndhw", mixing / np.sqrt((mixing**2).sum(1, keepdims=True)), z)


def test_fit_null_recovers_the_theory_on_iid_latents():
    rng = np.random.default_rng(4)
    (model,) = fit_null([rng.standard_normal((20, 30, 32, 32))])
    assert model.scale == pytest.approx(1, abs=0.03)
    assert model.dof == pytest.approx(30, rel=0.03)
    assert model.area == pytest.approx(1, abs=0.3)


def test_fitted_null_controls_false_alarms_of_dependent_latents():
    rng = np.random.default_rng(5)
    null = fit_null([_correlated_latents(20, rng)])
    assert null[0].area > 5 and null[0].dof < 16
    fresh = [_correlated_latents(30, rng)]
    theory = (log_nfa_maps(fresh) <= 0).any(axis=(1, 2))
    fitted = (log_nfa_maps(fresh, null=null) <= 0).any(axis=(1, 2))
    assert theory.mean() > 0.5  # the i.i.d. theory flags most normal images
    assert fitted.mean() <= 0.1
    # and a real anomaly is still found
    fresh[0][:5, :, 10:18, 10:18] += 3.0
    assert (log_nfa_maps(fresh, null=null)[:5] <= 0).any(axis=(1, 2)).all()


def test_segmenter_fits_the_null_from_normal_rows():
    rng = np.random.default_rng(6)
    normal = _correlated_latents(10, rng).reshape(10, -1)
    seg = ACotrarioSegmenter(latent_shapes=[(16, 32, 32)]).fit(normal)
    assert seg.null_[0].area > 5
    assert seg.map_level_ > 0
    theory = ACotrarioSegmenter(latent_shapes=[(16, 32, 32)], nfa_null="theory").fit(normal)
    assert theory.null_[0] == NullModel.theory(16)


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (1, 7), (2, 5)])
def test_tiny_maps_are_segmented(shape):
    u = np.full(shape, 1.0)
    u.flat[0] = 400.0  # one very unlikely pixel under chi2(4)
    labels, log_nfa = significant_regions(u, 4)
    assert labels.shape == shape and labels.flat[0] > 0
    assert log_nfa[labels.flat[0] - 1] < -50


def test_the_python_max_tree_is_scikit_images():
    """The runtime's component tree, without scikit-image, has the same parents on maps with and without ties."""
    from skimage.morphology import max_tree

    from sklearn_uflow._component_tree import python_max_tree

    rng = np.random.default_rng(0)
    for case in range(200):
        shape = tuple(rng.integers(3, 24, 2))
        image = rng.integers(0, 4, shape).astype(float) if case % 2 else rng.chisquare(4, shape)
        expected_parent, expected_order = max_tree(image, connectivity=1)
        parent, order = python_max_tree(image)
        np.testing.assert_array_equal(parent, expected_parent)
        np.testing.assert_array_equal(order, expected_order)
