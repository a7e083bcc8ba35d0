"""Stage 2: train ECoG decoders against a frozen speech model, evaluate them honestly, occlude electrodes,
compare models.

=======================  ===================================================================================
module                   holds
=======================  ===================================================================================
``targets``              per-trial segments (neural frames + the frozen encoder's reference parameters and
                         the true spectrograms), cached on disk by data and speech-model hash
``train``                :func:`train_decoder` (``edgensd train decoder``): losses through the frozen
                         synthesizer, time budget, checkpoints, resume
``selection``            the small-data recipe's validation split of the training trials, validation PCC,
                         early stopping and weight EMA
``augment``              augmentation of training crops: electrode dropout, time jitter, noise, gain
``baselines``            the PCC floor (training-mean spectrum) and ridge regression from time-lagged
                         neural frames (DESIGN.md, "Reporting accuracy honestly")
``evaluate``             :func:`evaluate_decoder` (``edgensd eval decoder``)
``occlusion``            :func:`occlusion` (``edgensd occlusion``): each electrode's contribution
``compare``              :func:`compare` (``edgensd compare``): several evaluations side by side
=======================  ===================================================================================

Importing the submodules needs PyTorch (``baselines`` and ``compare`` need only numpy / matplotlib).
"""

from __future__ import annotations

__all__ = ["augment", "baselines", "compare", "evaluate", "occlusion", "selection", "targets", "train"]
