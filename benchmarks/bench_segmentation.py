"""Time of the a contrario segmentation per image, at the latent shapes of the
Lite0 preset (256x256 input) and of MS-CaiT, on N(0, 1) latents: the paper's
regions (``delineation="tree"``) and the masks (``"map"``, which also
computes and smooths the anomaly map)."""

import time

import numpy as np

from _report import write_table
from sklearn_uflow import ACotrarioSegmenter
from sklearn_uflow.flow import latent_shapes

CASES = [
    ("efficientnet_lite0 (64², 32², 16²)", latent_shapes([(24, 64, 64), (40, 32, 32), (112, 16, 16)]), (256, 256)),
    ("MS-CaiT (28², 14²)", latent_shapes([(768, 28, 28), (384, 14, 14)]), (28, 28)),
    ("MS-CaiT (28², 14²)", latent_shapes([(768, 28, 28), (384, 14, 14)]), (448, 448)),
]


def main(n_images=50, repeats=5):
    rng = np.random.default_rng(0)
    rows = []
    for name, shapes, size in CASES:
        latents = [rng.standard_normal((n_images, *s)).astype(np.float32) for s in shapes]
        segmenter = ACotrarioSegmenter(shapes, output_size=size, nfa_null="theory").fit_latents(latents)
        row = [name, ", ".join(f"{c}×{h}×{w}" for c, h, w in shapes), f"{size[0]}×{size[1]}"]
        for delineation in ("tree", "map"):
            segmenter.set_params(delineation=delineation).log_nfa_of_latents([z[:2] for z in latents])  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                segmenter.log_nfa_of_latents(latents)
                times.append((time.perf_counter() - start) / n_images * 1000)
            row.append(f"{np.median(times):.2f}")
        rows.append(row)
    write_table("bench_segmentation", "Segmentation time",
                ["latents", "shapes (C×H×W)", "output", "regions of the trees, ms per image",
                 "masks, ms per image"],
                rows, notes=f"{n_images} images of N(0, 1) latents, median of {repeats} runs, one process "
                "(``n_jobs=None``), float32 latents as the flow gives them. The trees' time covers u = sum of "
                "squares, the component trees, the NFA and the merge of scales at the output size; the masks' "
                "adds the anomaly map (equation 2, smoothed) and the delineation of :func:`~sklearn_uflow."
                "acontrario.delineate`. Inside ``UFlowDetector`` the map is the one ``anomaly_maps`` returns.")


if __name__ == "__main__":
    main()
