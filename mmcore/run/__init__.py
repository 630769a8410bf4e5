"""The run folder, beneath both training and inference: its layout and resolved spec
(:mod:`~mmcore.run.layout`), checkpoints (:mod:`~mmcore.run.checkpoint`), atomic writes
(:mod:`~mmcore.run.atomic`, no torch), training state as safetensors + JSON
(:mod:`~mmcore.run.state`) and the writer's lock (:mod:`~mmcore.run.lock`). Nothing here imports
training, the data layer or inference."""
