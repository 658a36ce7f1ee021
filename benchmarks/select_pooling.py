"""How the default ``pooling`` of the CNN feature step was chosen: without test images.

The same protocol as ``select_defaults.py``: 10 % of the good *training*
images of each category are held out, the detector (Lite0 preset, 256×256,
the other defaults) is fitted on the rest once per candidate, and the
held-out images are scored as they are and with small and large planted
defects, with each width of ``map_smoothing`` (pooling smooths too, so the
two are chosen together). The defaults are the pair with the best mean pixel
AUROC and AUPRO over categories and families, where candidates within 0.1
point of the best are told apart by ``select_defaults_small_data.py``.
Writes ``docs/benchmarks/select_pooling.rst``.

Usage: ``python benchmarks/select_pooling.py [category ...]``
"""

import sys

from _report import write_table
from select_defaults import CATEGORIES, score_candidates

# Window sides of the strides 4, 8 and 16, finest first; the first is no pooling.
CANDIDATES = ((1, 1, 1), (3, 3, 1), (3, 3, 3), (5, 5, 1))


def pooled_detector(pooling, **params):
    """The detector with its defaults but ``params``, on Lite0 features pooled by ``pooling``."""
    from sklearn_uflow import CNNFeatureTransformer, UFlowDetector

    extractor = CNNFeatureTransformer("efficientnet_lite0", pooling=pooling)
    return UFlowDetector(extractor, random_state=0, device="cpu", **params)


def main(categories):
    # The paper's flow, as when the pooling was chosen (the image context came later).
    rows, means = score_candidates(categories, CANDIDATES, lambda p: pooled_detector(p, image_context=False))
    ranked = sorted(means, key=means.get, reverse=True)[:5]
    best_pooling, best_width = ranked[0]
    write_table("select_pooling", "Choosing the feature pooling on synthetic defects",
                ["category", "pooling (finest first)", "map_smoothing", "small: pixel AUROC", "small: AUPRO",
                 "large: pixel AUROC", "large: AUPRO", "mean", "fit s / image"], rows,
                notes="10 % of the good training images, held out of the fit, as they are and with planted "
                      "defects, small and large (see ``select_defaults.py``); no test image is used. The best "
                      "means over both datasets: " + ", ".join(f"pooling={p}, map_smoothing={w}: {means[p, w]:.2f}"
                                                               for p, w in ranked)
                      + f". Candidates within 0.1 point of the best (``pooling={best_pooling}, "
                      f"map_smoothing={best_width}``) are told apart on a small training set "
                      "(``select_defaults_small_data.py``).")


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
