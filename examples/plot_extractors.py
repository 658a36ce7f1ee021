"""
Choosing a feature extractor
============================

The feature step decides speed and, with the flow, accuracy. This example lists
the presets with their feature and latent shapes and times their extraction on
this machine. The ResNets and MS-CaiT are timed with untrained weights (their
ImageNet weights come through timm with internet; the time does not depend on
the weights); EfficientNet-Lite0 uses its real, installed weights.
"""

import time

import numpy as np

from sklearn_uflow import CNNFeatureTransformer
from sklearn_uflow.flow import latent_shapes

X = np.random.default_rng(0).integers(0, 256, (8, 256, 256, 3), dtype=np.uint8)
rows = []
for name, step in [
    ("efficientnet_lite0", CNNFeatureTransformer("efficientnet_lite0")),
    ("resnet18", CNNFeatureTransformer("resnet18", weights="untrained")),
    ("wide_resnet50_2", CNNFeatureTransformer("wide_resnet50_2", weights="untrained")),
]:
    step.fit(X[:1])
    step.extract(X[:2])  # warm-up
    start = time.perf_counter()
    step.extract(X)
    ms = (time.perf_counter() - start) / len(X) * 1000
    params = sum(p.numel() for p in step.model_.parameters()) / 1e6
    rows.append((name, step.feature_shapes_, latent_shapes(step.feature_shapes_), params, ms))

print(f"{'extractor':<20}{'M params':>9}{'ms/image':>10}  feature shapes -> latent shapes")
for name, shapes, latents, params, ms in rows:
    print(f"{name:<20}{params:>9.1f}{ms:>10.1f}  {shapes} -> {latents}")
print("mscait: 768x28x28 and 384x14x14 features (448x448 input); seconds per image on a CPU, use a GPU.")
