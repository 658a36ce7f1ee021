"""
What the threshold promises, and what it costs
==============================================

The mask threshold ``epsilon`` bounds the share of good images with a
detection: the detector measured its false alarms on held-out good images
and calibrated the NFA so that a good image holds a region with
``NFA <= epsilon`` with probability at most ``epsilon``. Here the share of
held-out images flagged (measured during ``fit``) and of good test images
flagged are traced against ``epsilon``, beside the promise itself and the
defective images found, with no refit: ``log_nfa_maps`` is computed once and
thresholded.
"""

import matplotlib.pyplot as plt
import numpy as np
from _data import example_data

from sklearn_uflow import CNNFeatureTransformer, UFlowDetector

train, test, masks, labels, name = example_data(image_size=128)
detector = UFlowDetector(CNNFeatureTransformer(input_size=128), max_epochs=12, random_state=0).fit(train)
scores = detector.score_samples(test)  # each image's smallest log10 NFA

epsilons = np.logspace(-3, 0, 25)
good = [(scores[labels == 0] <= np.log10(e)).mean() for e in epsilons]
found = [(scores[labels == 1] <= np.log10(e)).mean() for e in epsilons]
curve = detector.segmenter_.false_alarm_curve_
print(f"{name}: at epsilon={detector.epsilon:g}, good test images flagged "
      f"{np.mean(scores[labels == 0] <= np.log10(detector.epsilon)):.0%}, defective ones found "
      f"{np.mean(scores[labels == 1] <= np.log10(detector.epsilon)):.0%}")

fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(epsilons, epsilons, color="gray", linestyle="--", label="the promise: epsilon")
ax.plot(curve["epsilon"], curve["images_flagged"], marker="o", label="held-out good images flagged")
ax.plot(epsilons, good, marker="s", markersize=3, label="good test images flagged")
ax.plot(epsilons, found, marker="^", markersize=3, label="defective test images found")
ax.set_xscale("log")
ax.set_xlim(1e-3, 1)
ax.set_ylim(0, 1.02)
ax.set_xlabel("epsilon")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
ax.set_title(name, fontsize=9)
fig.tight_layout()
plt.show()
