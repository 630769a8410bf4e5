"""Inference, beside training: everything that uses a trained run or its export bundle.

- :mod:`.predict`: ``mmcore.load(RUN_DIR)``, a run folder -> a :class:`~.predictor.Predictor`
  (:mod:`.predictor`: batch prediction, evaluation, the reports that hide modalities);
- :mod:`.prepared`: ``mmcore.prepare(SPEC)``, a spec's model and loaders for another loop;
- :mod:`.export`: ``mmcore export``, a run folder -> a checked bundle (ONNX or torch.export);
- :mod:`.runtime`: a bundle -> predictions, without the trainer or the data layer;
- :mod:`.serve`: the HTTP endpoint of ``mmcore serve``.

Nothing here imports ``mmcore.train``; the runtime and the server import no ``mmcore.data``
either (``tests/test_architecture.py``). This file imports nothing, so that importing the
runtime or the server (which runs it) stays as light as they are.
"""
