"""The torch-free runtime: load a deployable bundle, run its decoder step frame by frame with carried state
on one of several backends (onnx, tflite, tflm), and render audio with the C synthesizer.

=================  =====================================================================================
module             holds
=================  =====================================================================================
``backend``        the step interface every backend implements (``StepBackend``, ``TensorSpec``)
``backend_onnx``   ONNX Runtime backend, state kept in bound buffers (IOBinding)
``bundle``         ``load_bundle``: format version, checksums, tensor specs, voice range
``pipeline``       ``make_backend`` and ``DecodePipeline`` (frame → step → physical parameters → audio)
``decode``         ``decode_file`` (``edgensd decode``): WAVs, spectrogram PNGs, PCC per trial
``segments``       trial segments cut as training and evaluation cut them
=================  =====================================================================================

Nothing in this package imports torch (tests/test_runtime_torchfree.py runs a whole decode where
``import torch`` fails)."""
