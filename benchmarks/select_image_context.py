"""Whether the flow's couplings should see the image's context: chosen without test images.

A model of local features cannot flag a large region whose texture is normal
for some images but not for the rest of its own image (Magnetic Tile's
"uneven" defects). The protocol of ``select_defaults.py`` (10 % of the good
*training* images held out, the detector fitted on the rest with the other
defaults) gets two more families of planted defects for it: texture swaps, a
large region replaced by the same region of another held-out image (see
``plant_texture_swaps``), and edge bands, a band from an edge of the image
whose surface finish is changed within the image (``plant_edge_bands``).
Each candidate, ``image_context`` False (the paper's flow) or True, is scored
with each width of ``map_smoothing``; the defaults are the pair with the best
mean pixel AUROC and AUPRO over categories and the four families. Writes
``docs/benchmarks/select_image_context.rst``.

Usage: ``python benchmarks/select_image_context.py [category ...]``
"""

import sys

from _report import write_table
from select_defaults import CATEGORIES, WIDTHS, score_candidates

# The widest of WIDTHS won the first run of this selection, so the grid goes on.
CONTEXT_WIDTHS = (*WIDTHS, 3.0, 4.0, 6.0)
# The table's columns after the candidate and the width.
FAMILY_COLUMNS = ["small: pixel AUROC", "small: AUPRO", "large: pixel AUROC", "large: AUPRO", "swaps: pixel AUROC",
                  "swaps: AUPRO", "bands: pixel AUROC", "bands: AUPRO", "mean", "fit s / image"]
FAMILY_NOTES = ("10 % of the good training images, held out of the fit, as they are and with planted defects: small, "
                "large, texture swaps and edge bands (see ``select_defaults.py``); no test image is used.")


def main(categories):
    from sklearn_uflow import CNNFeatureTransformer, UFlowDetector

    rows, means = score_candidates(
        categories, (False, True),
        lambda image_context: UFlowDetector(CNNFeatureTransformer("efficientnet_lite0"), image_context=image_context,
                                            random_state=0, device="cpu"),
        CONTEXT_WIDTHS, swaps=True, bands=True,
    )
    ranked = sorted(means, key=means.get, reverse=True)[:5]
    write_table("select_image_context", "Choosing the image context on synthetic defects",
                ["category", "image_context", "map_smoothing", *FAMILY_COLUMNS], rows,
                notes=FAMILY_NOTES + " The best means over both datasets: "
                      + ", ".join(f"image_context={c}, map_smoothing={w}: {means[c, w]:.2f}" for c, w in ranked)
                      + ".")


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
