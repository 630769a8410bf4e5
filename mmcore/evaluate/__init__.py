"""What training and inference share to evaluate a model: one evaluation path over a split
(:mod:`~mmcore.evaluate.split`: forward passes, gathered rows, losses and metrics), hiding
modalities (:mod:`~mmcore.evaluate.masking`), the modality and robustness reports
(:mod:`~mmcore.evaluate.ablation`) and the monitored metric (:mod:`~mmcore.evaluate.monitor`).
The trainer and a loaded run (:mod:`mmcore.inference.predict`) both import from here; nothing here
imports training."""
