"""Export toolchain (``edgensd.export`` once installed): step graphs with explicit state, ONNX/LiteRT
conversion, int8 calibration, bundles and parity checks. Populated by the export issue."""
