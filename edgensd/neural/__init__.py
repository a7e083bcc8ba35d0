"""Neural data: raw recordings (BIDS-iEEG, NWB, grids), high-gamma features, electrode layouts, simulation.

Submodules are imported explicitly (``from edgensd.neural.highgamma import ...``) so that optional readers
(MNE, pynwb) load only when used.
"""
