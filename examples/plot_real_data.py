"""
Real images from an MVTec-layout folder, with overlays
======================================================

Load a category folder with :func:`~sklearn_uflow.datasets.load_anomaly_folder`
(here the Intel ``hazelnut_toy`` when ``$SKLEARN_UFLOW_DATA`` is set, else
synthetic images), fit on ``train/good`` and draw the anomaly map and the mask's
contour over each test image with :func:`~sklearn_uflow.plotting.overlay`.
"""

import matplotlib.pyplot as plt
import numpy as np
from _data import example_data

from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
from sklearn_uflow.metrics import aupro, image_roc_auc, mean_iou, pixel_roc_auc
from sklearn_uflow.plotting import overlay

train, test, masks, labels, name = example_data(image_size=128)
detector = UFlowDetector(CNNFeatureTransformer(input_size=128), max_epochs=12, random_state=0).fit(train)
maps = detector.anomaly_maps(test)
predicted = detector.predict_masks(test)
print(f"{name}: {len(train)} training images, {len(test)} test images")
print(f"pixel ROC AUC {pixel_roc_auc(masks, maps):.3f}  AUPRO {aupro(masks, maps):.3f}  "
      f"image ROC AUC {image_roc_auc(labels, maps.max(axis=(1, 2))):.3f}  mIoU {mean_iou(masks, predicted):.3f}")

# %%
# Overlays: heat map of the anomaly score, cyan contour of the detected regions.
# The colours span the test maps' median (typical normal texture) to their maximum.
low, high = float(np.median(maps)), float(maps.max())
shown = list(range(min(8, len(test))))
fig, axes = plt.subplots(2, 4, figsize=(10, 5.2))
for ax, i in zip(axes.ravel(), shown):
    ax.imshow(overlay(test[i], maps[i], predicted[i], vmin=low, vmax=high))
    ax.set_title("defective" if labels[i] else "good", fontsize=9)
    ax.set_axis_off()
fig.tight_layout()
plt.show()
