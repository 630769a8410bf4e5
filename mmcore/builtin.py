"""mmcore's own plugin: the built-in fusions, heads and callbacks, registered through the
same hooks as any third-party plugin."""

from __future__ import annotations

from mmcore.plugins.hookspecs import hookimpl

_F = "mmcore.fusions"


@hookimpl
def register_fusions(register):
    def fusion(name: str, module: str, cls: str, options: str, description: str) -> None:
        register(name, f"{_F}.{module}:{cls}", f"{_F}.options:{options}", description)

    fusion("concat", "concat", "ConcatFusion", "ConcatOptions",
           "early fusion: concatenated pooled features, then an MLP")
    fusion("weighted", "weighted", "WeightedFusion", "WeightedOptions",
           "projections summed with learned softmax weights over the present modalities")
    fusion("rnn", "rnn", "RNNFusion", "RNNOptions",
           "an LSTM/GRU over the modalities (one step each) or over time-aligned sequences")
    fusion("gated", "gated", "GatedFusion", "GatedOptions",
           "gated multimodal units (Arevalo et al., 2017)")
    fusion("attention", "attention", "AttentionFusion", "AttentionOptions",
           "transformer over every modality's tokens, read at a CLS token")
    fusion("tensor", "tensor", "TensorFusion", "TensorOptions",
           "tensor fusion: outer product of the modalities (Zadeh et al., 2017)")
    fusion("low_rank_tensor", "low_rank_tensor", "LowRankTensorFusion", "LowRankTensorOptions",
           "low-rank multimodal fusion (Liu et al., 2018)")
    fusion("film", "film", "FiLMFusion", "FiLMOptions",
           "one modality scales and shifts the others' features (Perez et al., 2018)")
    fusion("late", "late", "LateFusion", "LateOptions",
           "one prediction per modality, averaged; models no interactions")


@hookimpl
def register_heads(register):
    h = "mmcore.heads"
    register(
        "classification",
        f"{h}.classification:ClassificationHead",
        f"{h}.options:ClassificationOptions",
        "single-label classification (cross-entropy)",
    )
    register(
        "multilabel",
        f"{h}.multilabel:MultiLabelHead",
        f"{h}.options:MultiLabelOptions",
        "multi-label classification (sigmoid + binary cross-entropy)",
    )
    register(
        "regression",
        f"{h}.regression:RegressionHead",
        f"{h}.options:RegressionOptions",
        "regression of one or more values (MSE, L1 or Huber)",
    )


@hookimpl
def register_callbacks(register):
    c = "mmcore.train.callbacks"
    register("csv", f"{c}:CSVLogger", None, "per-epoch metrics as metrics.csv in the run folder")
    register("log", "mmcore.train.progress:EpochLog", None,
             "one log line per epoch (on by itself when no progress bar is shown)")
    register(
        "tensorboard",
        f"{c}:TensorBoardLogger",
        None,
        "TensorBoard event files in <run>/tensorboard (needs mmcore-torch[tensorboard])",
    )
    # on by themselves (Trainer(report=, plots=, summary=) switch three off)
    register("early_stopping", f"{c}.early_stopping:EarlyStopping", None,
             "ends training after train.early_stopping epochs without improvement")
    register("health", f"{c}.health:HealthCallback", None,
             "training health warnings, printed once and kept in health.json")
    register("modality_report", f"{c}.modality_report:ModalityReport", None,
             "the best model with each modality hidden and alone (modality_report.json) "
             "and the drift reference")
    register("plots", f"{c}.plots:Plots", None,
             "training curves and confusion matrices as PNGs (needs mmcore-torch[plots])")
    register("card", f"{c}.card:ModelCard", None, "the run's model card, README.md")
    register("summary", f"{c}.summary:Summary", None, "the run's summary as a note at the end")
    t = "mmcore.train.trackers"
    register("mlflow", f"{t}.mlflow:MLflowTracker", None,
             "spec, per-epoch metrics and run files to MLflow (MLFLOW_TRACKING_URI; needs "
             "mmcore-torch[mlflow])")
    register("wandb", f"{t}.wandb:WandbTracker", None,
             "spec, per-epoch metrics and run files to Weights & Biases (WANDB_PROJECT, "
             "WANDB_MODE; needs mmcore-torch[wandb])")
