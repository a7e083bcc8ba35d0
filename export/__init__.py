"""Export toolchain (``edgensd.export`` once installed): runs where training runs (needs torch).

=================  =====================================================================================
module             holds
=================  =====================================================================================
``stepgraph``      the explicit-cell step graph of any causal decoder (``step_module``)
``onnx_export``    fp32 ONNX (one file) and static int8 QDQ ONNX with int8 inputs, outputs and state
``calibrate``      calibration samples ``[x, *states]`` streamed from a participant's training trials
``bundle``         the bundle writer (``edgensd export bundle``) and its format hook (``register_format``)
``check``          every runtime of a bundle vs float on held-out trials (``edgensd check``)
``commands``       the ``export bundle``, ``decode`` and ``check`` subcommands
=================  =====================================================================================

The bundle is loaded and run without torch by :mod:`edgensd.runtime`.
"""
