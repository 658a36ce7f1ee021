"""
How robust is the a contrario threshold?
========================================

The mask threshold ``epsilon`` bounds the expected number of false regions per
normal image. Here the mIoU (the paper's convention: every test image counts,
a good image without detection scores 1) is traced against ``-log10 epsilon``
from 0 to 6, with no refit: ``log_nfa_maps`` is computed once and thresholded.
"""

import matplotlib.pyplot as plt
import numpy as np
from _data import example_data

from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
from sklearn_uflow.metrics import mean_iou

train, test, masks, labels, name = example_data(image_size=128)
detector = UFlowDetector(CNNFeatureTransformer(input_size=128), max_epochs=12, random_state=0).fit(train)
log_nfa = detector.log_nfa_maps(test)

exponents = np.linspace(0, 6, 25)
miou = [mean_iou(masks, log_nfa <= -e) for e in exponents]
false_alarms = [(log_nfa[labels == 0] <= -e).any(axis=(1, 2)).mean() for e in exponents]
print(f"{name}: mIoU at epsilon=1: {miou[0]:.3f}; good images with a detection: {false_alarms[0]:.0%}")

fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(exponents, miou, marker="o", markersize=3, label="mIoU")
ax.plot(exponents, false_alarms, marker="s", markersize=3, label="good images with a detection")
ax.set_xlabel("-log10 epsilon")
ax.set_ylim(0, 1.02)
ax.grid(alpha=0.3)
ax.legend()
ax.set_title(name, fontsize=9)
fig.tight_layout()
plt.show()
