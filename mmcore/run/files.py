"""The names of the files in a run folder (see :mod:`mmcore.run.layout`, which re-exports
them). Plain strings with no import, so a reader of a run folder that needs no torch (``mmcore
plots``, :mod:`mmcore.train.plots`) can name its files without importing the checkpoint code."""

SPEC_JSON = "spec.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_JSON = "metrics.json"
MODALITIES = "modalities"
BAD_ROWS = "bad_rows.json"  # written by the data module
MODALITY_REPORT = "modality_report.json"
DRIFT_REFERENCE = "drift_reference.json"  # the training split's feature statistics (mmcore.drift)
EXPORTS = "exports.json"  # the bundles exported from the run, with their digests
ROBUSTNESS = "robustness.json"  # written by mmcore evaluate --robustness
CONFUSION = "confusion.json"  # the final evaluation's confusion matrices (mmcore.train.plots)
HEALTH = "health.json"  # written by mmcore.train.health
CARD = "README.md"  # the model card, written by mmcore.run.card
