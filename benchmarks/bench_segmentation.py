"""Time of the a contrario segmentation per image, at the latent shapes of the
Lite0 preset (256x256 input) and of MS-CaiT, on N(0, 1) latents."""

import time

import numpy as np

from _report import write_table
from sklearn_uflow.acontrario import log_nfa_maps
from sklearn_uflow.flow import latent_shapes

SHAPES = {
    "efficientnet_lite0 (64², 32², 16²)": latent_shapes([(24, 64, 64), (40, 32, 32), (112, 16, 16)]),
    "MS-CaiT (28², 14²)": latent_shapes([(768, 28, 28), (384, 14, 14)]),
}


def main(n_images=50, repeats=5):
    rng = np.random.default_rng(0)
    rows = []
    for name, shapes in SHAPES.items():
        latents = [rng.standard_normal((n_images, *s)).astype(np.float32) for s in shapes]
        size = shapes[0][1:]
        log_nfa_maps([z[:2] for z in latents], size)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            log_nfa_maps(latents, size)
            times.append((time.perf_counter() - start) / n_images * 1000)
        rows.append([name, ", ".join(f"{c}×{h}×{w}" for c, h, w in shapes), f"{np.median(times):.2f}"])
    write_table("bench_segmentation", "Segmentation time", ["latents", "shapes (C×H×W)", "ms per image (median)"],
                rows, notes=f"{n_images} images of N(0, 1) latents, median of {repeats} runs, one process "
                "(``n_jobs=None``); the time covers u = sum of squares, the component trees, the NFA and the "
                "merge of scales at the finest latent size.")


if __name__ == "__main__":
    main()
