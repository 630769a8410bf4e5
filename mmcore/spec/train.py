"""``TrainSpec``: the ``train`` section of a spec, every training setting with its default
(docs/training.md#every-train-option lists them). Imports no torch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from mmcore.spec.strict import StrictModel

#: ``train.eval_batch_size: auto`` evaluates in batches of this many times ``batch_size`` on
#: the CPU
EVAL_BATCH_FACTOR = 4


class TrainSpec(StrictModel):
    """Training settings."""

    epochs: int | Literal["auto"] = Field(
        "auto", description="passes over the training split, or 'auto' (the default): enough "
        "for at least 300 optimizer steps, at least 10 and at most 200 epochs (10 from about "
        "10,000 rows at batch size 32; more on small data sets)"
    )

    @field_validator("epochs", mode="before")
    @classmethod
    def _epochs(cls, value: Any) -> Any:
        return _count_or_auto(value, "a whole number of epochs")
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int | Literal["auto"] = Field(
        "auto", description="rows per batch of the passes without gradients (validation, test, "
        "the end-of-run reports, mmcore evaluate): a number, or 'auto' (the default: "
        f"{EVAL_BATCH_FACTOR} x batch_size on the CPU, where fewer, larger batches cost less "
        "per row; batch_size on a GPU, whose memory a training batch may fill). The figures do "
        "not depend on it: losses are averaged over chunks of batch_size rows either way"
    )

    @field_validator("eval_batch_size", mode="before")
    @classmethod
    def _eval_batch_size(cls, value: Any) -> Any:
        return _count_or_auto(value, "a number of rows")

    def eval_batch(self, device: str = "cpu") -> int:
        """The rows per batch of a pass without gradients on a ``device`` of this type
        (``"cpu"``, ``"cuda"``...): ``eval_batch_size`` resolved."""
        if self.eval_batch_size != "auto":
            return self.eval_batch_size
        return self.batch_size * (EVAL_BATCH_FACTOR if device == "cpu" else 1)

    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    scheduler: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    accumulate: int = Field(1, ge=1, description="gradient accumulation steps")
    precision: Literal["32", "bf16", "fp16"] = "32"

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value  # train.precision=32 on the CLI

    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    seed: int = 0
    deterministic: bool = False
    monitor: str | None = Field(
        None,
        description="metric that picks the best checkpoint, e.g. 'label.accuracy' "
        "(default: the first head's main metric)",
    )
    early_stopping: int | None = Field(None, ge=1, description="patience in epochs")
    num_workers: int = Field(0, ge=0)
    threads: int | Literal["auto"] = Field(
        "auto", description="torch intra-op threads while training: a number, or 'auto' (the "
        "usable cores, shared among this machine's training processes, less one per "
        "DataLoader worker; at least 1)"
    )

    flush_denormal: bool = Field(
        True, description="on the CPU, treat subnormal floats (float32 below 1.2e-38) as zero "
        "during fit(), as TensorFlow's CPU kernels do: computing with them is many times slower "
        "on some processors (a trained LSTM's backward pass ran 1.6x slower on an Intel "
        "Xeon); set on the calling thread (and threads started after it), restored afterwards"
    )

    @field_validator("threads")
    @classmethod
    def _threads_positive(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"threads must be at least 1 or 'auto', got {value}")
        return value

    sampler: Literal["shuffle", "balanced"] = Field(
        "shuffle",
        description="training order: 'shuffle' (a permutation per epoch) or 'balanced' (rows "
        "drawn with replacement, each class of the first classification head equally likely)",
    )
    modality_dropout: float = Field(0.0, ge=0, lt=1)
    modality_loss: float = Field(
        1.0, ge=0, description="weight of each modality's loss alone (the others hidden), "
        "added at every step so that every modality keeps working alone (the encoders run "
        "once; the fusion and heads once more per modality); 0 turns it off. No effect with "
        "one modality"
    )
    ensemble: int = Field(
        1, ge=1, le=64, description="models of this spec trained together from different "
        "initial weights, their predictions averaged (class probabilities): 3 to 5 gain a "
        "point or more on small data sets, at that many times the compute; 1 (the default): "
        "one model"
    )
    ema: float | Literal["auto"] | None = Field(
        "auto", description="decay of a moving average of the weights (updated after every "
        "optimizer step) that the run validates, saves and predicts with; 'auto' (the "
        "default): 0.99 for a training split of up to 2,000 rows, a constant learning rate and "
        "at least 300 optimizer steps (measured to help there), else none; none: the weights "
        "as trained")

    @field_validator("ema", mode="before")
    @classmethod
    def _ema(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("none", "null", "off"):
            return None  # train.ema=none on the command line
        if value is None or value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise ValueError(f"expected a decay between 0 and 1 (e.g. 0.99), 'auto' or none, "
                             f"got {value!r}")
        return float(value)

    callbacks: list[str] = Field(default_factory=lambda: ["csv"])
    progress: bool = True
    final_test: bool = Field(
        True, description="evaluate the best model on the test split at the end (false: on "
        "validation only, for tuning without looking at test)"
    )
    strategy: Literal["auto", "ddp", "fsdp"] = Field(
        "auto", description="how several processes train together: 'ddp' (a whole copy of the "
        "model per process), 'fsdp' (parameters, gradients and optimizer state sharded per "
        "encoder and head, torch's fully_shard) or 'auto' (ddp); one process ignores it"
    )
    checkpoint_every: int | None = Field(
        None, ge=1, description="also write a checkpoint every N optimizer steps inside an "
        "epoch, so a run killed mid-epoch resumes from there (default: at epoch ends only)"
    )


def _count_or_auto(value: Any, what: str) -> int | str:
    """``"auto"``, or ``value`` as a whole number of at least 1 (a number, or its decimal
    digits as text from the command line); ``ValueError`` naming ``what`` was expected."""
    if value == "auto":
        return value
    number = value if isinstance(value, int) and not isinstance(value, bool) else (
        int(value) if isinstance(value, str) and value.strip().isdecimal() else None)
    if number is None or number < 1:
        raise ValueError(f"expected {what} (at least 1) or 'auto', got {value!r}")
    return number
