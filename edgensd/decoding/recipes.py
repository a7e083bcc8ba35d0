"""Named stage-2 training recipes: sets of :class:`~edgensd.decoding.train.DecoderTrainConfig` values and decoder
config overrides that ``edgensd train decoder --recipe`` and ``edgensd sweep --recipe`` apply in one flag.

A recipe only fills in what the command line leaves unset: an explicit flag (``--weight-decay``, ``--aug-noise``,
...), ``--decoder-config`` or a sweep's ``--train-config`` / ``--decoder-config`` always wins. The resolved values
are what ``train_config.json`` and ``decoder_config.json`` record, so a model trained with a recipe is described
completely without it.

``small-data`` (README, "Small-data recipe"): AdamW weight decay 0.05, dropout 0.3, crop augmentation (electrode
dropout 0.1, Gaussian noise SD 0.3, per-electrode log-gain SD 0.2), the spectrogram terms as RMSE (conditional
mean) rather than L1, and the correlation term (``weight_pcc`` 1). Measured on causal ``edge`` only, 15 minutes per
run, paired over 50 test trials: without the correlation term, against the defaults, +0.023 PCC on the linear
simulator preset, +0.025 mild, +0.036 strong, and on two held-out participants of other speakers +0.029 (strong)
and +0.012 (mild, interval [-0.006, +0.026]); the correlation term on top +0.009 (strong), +0.005 (held-out
strong, interval [-0.001, +0.011]), +0.002 (linear and mild, unpaired); over the shipped nine-participant cohort at
30 minutes per model, causal ``edge`` with it beat causal ridge by +0.043 (README, "Cohort sweeps").

:data:`ARCH_DEFAULTS` names the recipe the command line uses for an architecture when ``--recipe`` is left at
``auto``: ``small-data`` for ``edge`` (where it was measured), ``none`` for the others (not measured without it).
Torch-free (the command line's ``--help`` imports it).
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["ARCH_DEFAULTS", "AUTO", "RECIPES", "recipe_decoder", "recipe_train", "resolve_recipe"]

#: Recipe name -> {"train": DecoderTrainConfig values, "decoder": decoder config overrides}. "none" changes nothing.
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "none": {"train": {}, "decoder": {}},
    "small-data": {
        "train": {"weight_decay": 0.05, "aug_dropout": 0.1, "aug_noise": 0.3, "aug_gain": 0.2, "spec_loss": "rmse",
                  "weight_pcc": 1.0},
        "decoder": {"dropout": 0.3},
    },
}

#: Architecture -> the recipe ``--recipe auto`` (the command line's default) picks; unlisted ones get "none".
ARCH_DEFAULTS: dict[str, str] = {"edge": "small-data"}

#: The command-line value that picks each architecture's recipe from :data:`ARCH_DEFAULTS`.
AUTO = "auto"


def resolve_recipe(name: str, arch: str) -> str:
    """The recipe that ``--recipe name`` means for architecture ``arch``.

    Parameters
    ----------
    name : str
        ``"auto"`` or a key of :data:`RECIPES`.
    arch : str
        Decoder architecture name.

    Returns
    -------
    str
        A key of :data:`RECIPES`: ``name`` itself, or for ``"auto"`` the architecture's entry in
        :data:`ARCH_DEFAULTS` (``"none"`` if it has none).

    Raises
    ------
    ValueError
        Naming the allowed values.
    """
    if name == AUTO:
        return ARCH_DEFAULTS.get(arch, "none")
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {AUTO}, {', '.join(RECIPES)}, got {name!r}")
    return name


def _get(name: str) -> dict[str, dict[str, Any]]:
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, got {name!r}")
    return RECIPES[name]


def recipe_train(name: str, explicit: dict[str, Any] | None = None) -> dict[str, Any]:
    """Training values of recipe ``name`` with ``explicit`` values on top.

    Parameters
    ----------
    name : str
        A key of :data:`RECIPES`.
    explicit : dict, optional
        DecoderTrainConfig values given on the command line (they win).

    Returns
    -------
    dict
        A new dict: the recipe's values, then ``explicit``.

    Raises
    ------
    ValueError
        Naming the allowed recipes.
    """
    return {**copy.deepcopy(_get(name)["train"]), **(explicit or {})}


def recipe_decoder(name: str, explicit: dict[str, Any] | None = None) -> dict[str, Any]:
    """Decoder config overrides of recipe ``name`` with ``explicit`` overrides on top (same contract as
    :func:`recipe_train`)."""
    return {**copy.deepcopy(_get(name)["decoder"]), **(explicit or {})}
