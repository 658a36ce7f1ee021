"""
Quick start: anomaly maps and masks on synthetic defects
========================================================

Fit :class:`~sklearn_uflow.UFlowDetector` on defect-free images made by
:func:`~sklearn_uflow.datasets.make_defects`, then look at the anomaly maps
and at the masks of the a contrario threshold (``epsilon = 0.05``, the
default: a good image holds a detection with probability at most 0.05, as
measured on held-out good images).
"""

import matplotlib.pyplot as plt

from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
from sklearn_uflow.datasets import make_defects
from sklearn_uflow.metrics import aupro, pixel_roc_auc

X, y, masks = make_defects(n_samples=60, image_size=96, random_state=0)
train = X[y == 0][:16]
test, test_masks = X[30:], masks[30:]

detector = UFlowDetector(CNNFeatureTransformer(input_size=96), max_epochs=10, random_state=0)
detector.fit(train)
maps = detector.anomaly_maps(test)
predicted = detector.predict_masks(test)
print(f"pixel ROC AUC {pixel_roc_auc(test_masks, maps):.3f}, AUPRO {aupro(test_masks, maps):.3f}")
print("images flagged:", (detector.predict(test) == -1).sum(), "of", len(test),
      "- with a defect:", y[30:].sum())

# %%
# Each column: the image, its true defect, the anomaly map and the detected mask.
from sklearn_uflow.plotting import plot_grid

plot_grid(test, maps, predicted, test_masks, n_columns=6,
          titles=["defective" if label else "good" for label in y[30:36]])
plt.show()
