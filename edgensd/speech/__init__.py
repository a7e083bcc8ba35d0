"""The speech half: source-filter synthesizer (PyTorch, differentiable), the frame-by-frame numpy
renderer the C synthesizer mirrors, Griffin-Lim, a DSP pitch tracker and the speech encoder."""
