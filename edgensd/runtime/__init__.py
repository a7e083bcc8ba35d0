"""The torch-free runtime: load a deployable bundle, run its decoder step frame by frame with carried state
on one of several backends (onnx, tflite, tflm), and render audio with the C synthesizer.

Nothing in this package imports torch (a test proves it)."""
