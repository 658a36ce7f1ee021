"""
Pipelines and grid search with pixel-level scorers
==================================================

:class:`~sklearn_uflow.UFlowDetector` is a scikit-learn estimator: it clones,
takes nested parameters (``extractor__input_size``) and works in
:class:`~sklearn.model_selection.GridSearchCV`. ``fit`` reads masks from ``y``
and trains only on the normal images of each fold; the scorers of
:mod:`sklearn_uflow.metrics` read the masks from ``y`` too, so candidates are
ranked by pixel-level quality on held-out defects.
"""

import numpy as np
from _data import example_data
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
from sklearn_uflow.metrics import aupro_scorer, pixel_roc_auc_scorer

train, test, masks, labels, name = example_data(image_size=96)
X = np.concatenate([train, test])
y = np.concatenate([np.zeros((len(train), *masks.shape[1:]), bool), masks])  # masks carry the labels

search = GridSearchCV(
    UFlowDetector(CNNFeatureTransformer(input_size=96), max_epochs=6, random_state=0),
    {"n_flow_steps": [2, 4], "learning_rate": [2e-3, 5e-3]},
    scoring={"aupro": aupro_scorer, "pixel_auroc": pixel_roc_auc_scorer},
    refit="aupro",
    cv=KFold(3, shuffle=True, random_state=0),
)
search.fit(X, y)

print(f"{name}: {len(X)} images, {int(labels.sum())} with defects")
ranking = np.argsort(search.cv_results_["rank_test_aupro"])
print(f"{'n_flow_steps':>12} {'learning_rate':>13} {'AUPRO':>7} {'pixel AUROC':>11}")
for i in ranking:
    params = search.cv_results_["params"][i]
    print(f"{params['n_flow_steps']:>12} {params['learning_rate']:>13g} "
          f"{search.cv_results_['mean_test_aupro'][i]:>7.3f} {search.cv_results_['mean_test_pixel_auroc'][i]:>11.3f}")
