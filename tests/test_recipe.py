"""The small-data recipe's parts in isolation: augmentation, validation split, early stopping, weight EMA."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from edgensd.cli import train_decoder as train_cli
from edgensd.decoding import augment
from edgensd.decoding import train as train_mod
from edgensd.decoding.selection import EarlyStopping, WeightEMA, validation_split
from edgensd.decoding.targets import Segments
from edgensd.decoding.train import RECIPE_OFF, DecoderTrainConfig, _Crops
from edgensd.params import N_PARAMS, VoiceRange


def _x(shape=(64, 50, 32), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_electrode_dropout_zeroes_whole_electrodes_at_the_rate():
    x = _x()
    y = augment.electrode_dropout(x, 0.25, np.random.default_rng(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    dropped = (y == 0).all(axis=1)  # (batch, electrodes): all frames zero
    kept = (y == x).all(axis=1)
    assert (dropped | kept).all()  # an electrode is dropped for the whole crop or left alone
    assert 0.21 < dropped.mean() < 0.29  # 2048 draws at p = 0.25
    assert len({tuple(r) for r in dropped}) > 1  # drawn per crop, not once for the batch
    again = augment.electrode_dropout(x, 0.25, np.random.default_rng(1))
    assert np.array_equal(y, again)  # deterministic under a seed
    assert np.array_equal(augment.electrode_dropout(x, 0.0, np.random.default_rng(1)), x)
    with pytest.raises(ValueError, match=r"p \(electrode dropout\) must be in \[0, 1\), got 1.0"):
        augment.electrode_dropout(x, 1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        augment.electrode_dropout(x[0], 0.1, np.random.default_rng(0))


def test_jitter_noise_and_gain():
    s = augment.jitter_shifts(5000, 3, np.random.default_rng(2))
    assert s.dtype == np.int64 and s.min() == -3 and s.max() == 3 and set(np.unique(s)) == set(range(-3, 4))
    assert np.array_equal(s, augment.jitter_shifts(5000, 3, np.random.default_rng(2)))
    assert not augment.jitter_shifts(10, 0, np.random.default_rng(2)).any()
    with pytest.raises(ValueError, match="max_frames .* integer >= 0, got -1"):
        augment.jitter_shifts(3, -1, np.random.default_rng(0))
    x = _x()
    y = augment.add_noise(x, 0.5, np.random.default_rng(3))
    assert y.shape == x.shape and y.dtype == x.dtype and abs(float((y - x).std()) - 0.5) < 0.01
    assert abs(float((y - x).mean())) < 0.01
    g = augment.gain_scale(x, 0.2, np.random.default_rng(4))
    ratio = g / x  # one gain per crop and electrode, constant over time
    assert np.allclose(ratio, ratio[:, :1], rtol=1e-5) and (ratio > 0).all()
    assert abs(float(np.log(ratio[:, 0]).std()) - 0.2) < 0.02
    assert np.array_equal(g, augment.gain_scale(x, 0.2, np.random.default_rng(4)))
    for fn in (augment.add_noise, augment.gain_scale):
        with pytest.raises(ValueError, match="must be >= 0, got -0.1"):
            fn(x, -0.1, np.random.default_rng(0))


def _segments(lengths=(120, 90, 200), n_el=6):
    """Segments whose neural value at every electrode, and first spectrogram bin, is the row index (to read back
    which frames a crop took)."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(offsets[-1])
    rng = np.random.default_rng(0)
    params = rng.uniform(0.2, 0.8, (n, N_PARAMS)).astype(np.float32)
    lo, hi = VoiceRange.preset("high").bounds()
    params = (lo + params * (hi - lo)).astype(np.float32)
    row = np.arange(n, dtype=np.float32)[:, None]
    return Segments(trials=np.arange(len(lengths)), offsets=offsets, first=np.zeros(len(lengths), np.int64),
                    length=np.asarray(lengths, np.int64), neural=np.repeat(row, n_el, 1),
                    spec=np.repeat(row, 256, 1), mel=np.zeros((n, 128), np.float32), params=params)


def test_crops_jitter_stays_within_bounds_and_segment():
    seg = _segments()
    cfg = DecoderTrainConfig(crop_frames=48, warmup_frames=8, aug_jitter=4)
    crops = _Crops(seg, VoiceRange.preset("high"), cfg, np.random.default_rng(5))
    shifts = []
    for _ in range(50):
        x, spec, mel, pos, w, mask = crops.sample(8)
        assert x.shape == (8, 48, 6) and mask.shape == (8, 48)
        src = x[..., 0].numpy()  # the row each neural frame came from
        for b in range(8):
            k = int(np.searchsorted(seg.offsets, src[b, 0], side="right") - 1)
            assert (src[b] >= seg.offsets[k]).all() and (src[b] < seg.offsets[k + 1]).all()  # same segment
        tgt = spec[..., 0].numpy()  # the row of each target frame
        d = src - tgt
        assert (np.abs(d) <= 4).all()  # clipped at the segment's ends, never beyond the bound
        assert (np.abs(d - d[:, :1]) <= 4).all()
        shifts.extend(d[:, 24].tolist())
    assert set(np.unique(shifts)) == set(range(-4, 5))
    # without augmentation the neural frames are the targets' own frames
    plain = _Crops(seg, VoiceRange.preset("high"), dataclasses.replace(cfg, aug_jitter=0), np.random.default_rng(5))
    x, *_, mask = plain.sample(4)
    assert ((x[..., 0] == x[:, :1, 0] + torch.arange(48)) | (mask == 0)).all()


def test_crops_draw_the_same_without_augmentation_as_before():
    """All augmentations off: the crops are those of the recipe before augmentation existed."""
    seg = _segments()
    cfg = DecoderTrainConfig(crop_frames=48, warmup_frames=8)
    a = _Crops(seg, VoiceRange.preset("high"), cfg, np.random.default_rng(7)).sample(6)
    rng = np.random.default_rng(7)  # the original sampling, written out
    lengths = np.diff(seg.offsets)
    k = rng.choice(len(lengths), size=6, p=lengths / lengths.sum())
    ln = lengths[k]
    start = (rng.random(6) * (np.maximum(ln - 48, 0) + 1)).astype(np.int64)
    t = start[:, None] + np.arange(48)[None, :]
    idx = seg.offsets[k][:, None] + np.minimum(t, ln[:, None] - 1)
    assert np.array_equal(a[0].numpy(), seg.neural[idx] * (t < ln[:, None])[..., None])


def test_validation_split():
    train = np.array([0, 2, 3, 5, 7, 8, 9, 11, 12, 13, 20, 21])
    fit, val = validation_split(train, 0.25, seed=4)
    assert len(val) == 3 and len(fit) == 9
    assert not set(fit) & set(val) and set(fit) | set(val) == set(train)
    assert np.array_equal(val, np.sort(val))
    assert np.array_equal(val, validation_split(train, 0.25, seed=4)[1])  # seeded
    fit0, val0 = validation_split(train, 0.0, seed=4)
    assert np.array_equal(fit0, train) and val0.size == 0
    assert len(validation_split(train[:2], 0.01, seed=0)[1]) == 1  # at least one trial when asked for any
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\) \(0: no validation\), got 1.0"):
        validation_split(train, 1.0, seed=0)
    with pytest.raises(ValueError, match="val_fraction=0.5 leaves no training trials"):
        validation_split(train[:1], 0.5, seed=0)


def test_validation_split_seeds_differ():
    train = np.arange(100)
    vals = {tuple(validation_split(train, 0.1, seed=s)[1]) for s in range(5)}
    assert len(vals) == 5


def test_early_stopping_counts_evaluations_without_improvement():
    es = EarlyStopping(patience=2, min_delta=0.01)
    assert es.update(0.5, 10) and es.best == 0.5 and es.best_step == 10
    assert not es.update(0.505, 20) and es.bad_evals == 1 and not es.stopped  # within min_delta
    assert es.update(0.6, 30) and es.bad_evals == 0  # counter resets
    assert not es.update(float("nan"), 40) and not es.stopped  # NaN is never an improvement
    assert not es.update(0.3, 50) and es.stopped and es.best == 0.6 and es.best_step == 30
    restored = EarlyStopping(patience=2)
    restored.load_state_dict(es.state_dict())
    assert restored.state_dict() == es.state_dict()
    never = EarlyStopping(patience=0)
    never.update(1.0, 1)
    for s in range(100):
        never.update(0.0, s + 2)
    assert not never.stopped and never.bad_evals == 100
    with pytest.raises(ValueError, match="patience must be an integer >= 0"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="min_delta must be >= 0"):
        EarlyStopping(patience=1, min_delta=-1.0)


def test_weight_ema_math_and_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    w0 = model[0].weight.detach().clone()
    ema = WeightEMA(model, decay=0.9)
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    expect = w0.clone()
    for n in range(30):
        with torch.no_grad():
            model[0].weight.add_(1.0)
            model[1].running_mean.add_(0.5)
        d = min(0.9, (1 + n) / (10 + n))
        assert ema.current_decay() == pytest.approx(d)
        ema.update(model)
        expect = d * expect + (1 - d) * model[0].weight.detach()
        assert torch.allclose(ema.module[0].weight, expect, atol=1e-5)
    assert ema.n_updates == 30
    assert torch.equal(ema.module[1].running_mean, model[1].running_mean)  # buffers are copied
    assert not torch.equal(ema.module[0].weight, model[0].weight)  # the average lags the weights
    other = WeightEMA(model, decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.n_updates == 30 and torch.equal(other.module[0].weight, ema.module[0].weight)
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match=r"ema_decay must be in \(0, 1\)"):
            WeightEMA(model, decay=bad)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("val_fraction", 1.0, r"val_fraction must be in \[0, 1\)"),
        ("val_fraction", -0.1, r"val_fraction must be in \[0, 1\)"),
        ("val_every_s", 0.0, "val_every_s must be > 0"),
        ("patience", -1, "patience must be an integer >= 0"),
        ("patience", 1.5, "patience must be an integer >= 0"),
        ("ema_decay", 1.0, r"ema_decay must be in \[0, 1\)"),
        ("aug_dropout", 1.0, r"aug_dropout must be in \[0, 1\)"),
        ("aug_jitter", 80, r"aug_jitter must be an integer in \[0, crop_frames // 2 = 80\)"),
        ("aug_jitter", -1, "aug_jitter must be an integer"),
        ("aug_noise", -0.5, "aug_noise must be a finite number >= 0"),
        ("aug_gain", math.inf, "aug_gain must be a finite number >= 0"),
        ("weight_pcc", -0.1, "weight_pcc must be a finite number >= 0"),
        ("weight_decay", -1e-3, "weight_decay must be a finite number >= 0"),
        ("lr", -1e-3, "lr must be a finite number >= 0"),
        ("weight_lin", math.nan, "weight_lin must be a finite number >= 0"),
        ("spec_loss", "l2", "spec_loss must be one of l1, rmse, got 'l2'"),
    ],
)
def test_recipe_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        DecoderTrainConfig(**{field: value})


def test_cli_defaults_match_the_config_and_old_checkpoints_resume_without_the_recipe():
    d = DecoderTrainConfig()
    for k, v in (*vars(train_cli._RECIPE_DEFAULTS).items(), *vars(train_cli._LOSS_DEFAULTS).items()):
        assert getattr(d, k) == v, k
    old = {k: v for k, v in d.to_dict().items() if k not in vars(train_cli._RECIPE_DEFAULTS)
           and k not in ("weight_pcc", "spec_loss")}
    cfg = DecoderTrainConfig.from_dict({**RECIPE_OFF, **old})
    assert cfg.val_fraction == 0 and cfg.ema_decay == 0 and not cfg.aug_jitter and not cfg.aug_dropout
    assert cfg.weight_pcc == 0 and cfg.spec_loss == "l1"


def test_crop_correlation_matches_numpy_per_crop():
    rng = np.random.default_rng(4)
    mask = np.ones((3, 20), bool)
    mask[0, :5] = False  # warm-up frames
    mask[2, 12:] = False  # padding past the trial's end
    true = rng.normal(size=(3, 20, 7))
    pred = 0.6 * true + rng.normal(size=(3, 20, 7))
    keep = torch.from_numpy(mask)
    crop = torch.arange(3)[:, None].expand(3, 20)[keep]
    r = train_mod.crop_correlation(torch.from_numpy(pred)[keep], torch.from_numpy(true)[keep], crop, 3)
    ref = [np.corrcoef(pred[b][mask[b]].ravel(), true[b][mask[b]].ravel())[0, 1] for b in range(3)]
    np.testing.assert_allclose(r.numpy(), ref, rtol=0, atol=1e-12)
    # a crop with no counted frame is left out; a constant prediction scores 0, not NaN
    mask[1] = False
    keep = torch.from_numpy(mask)
    crop = torch.arange(3)[:, None].expand(3, 20)[keep]
    flat = torch.zeros(int(keep.sum()), 7, dtype=torch.float64)
    r = train_mod.crop_correlation(flat, torch.from_numpy(true)[keep], crop, 3)
    assert r.shape == (2,) and torch.equal(r, torch.zeros(2, dtype=torch.float64))


def test_pcc_loss_term_adds_one_minus_the_mean_crop_correlation_and_has_gradients():
    from edgensd.decoders.registry import get_decoder
    from edgensd.speech.synth import Synthesizer

    torch.manual_seed(0)
    voice = VoiceRange.preset("low")
    dec = get_decoder("edge", n_electrodes=6, causal=True, channels=4, dilations=[1], gru_hidden=4)
    dec.eval()  # no dropout: both calls see the same output
    synth = Synthesizer()
    b, t = 3, 12
    x = torch.randn(b, t, 6)
    spec = torch.rand(b, t, 256) * 2 - 1
    mel = torch.rand(b, t, 128) * 2 - 1
    pos = torch.rand(b, t, N_PARAMS)
    w = torch.ones(b, t, N_PARAMS)
    mask = torch.ones(b, t)
    mask[:, :2] = 0
    base = DecoderTrainConfig()
    with_pcc = dataclasses.replace(base, weight_pcc=0.7)
    total0, parts0 = train_mod.decoder_losses(dec, synth, voice, base, x, spec, mel, pos, w, mask)
    total1, parts1 = train_mod.decoder_losses(dec, synth, voice, with_pcc, x, spec, mel, pos, w, mask)
    assert "pcc" not in parts0 and -1 < parts1["pcc"] < 1
    assert total1.item() == pytest.approx(total0.item() + 0.7 * (1 - parts1["pcc"]), abs=1e-5)
    dec.zero_grad()
    (total1 - total0).backward()  # the correlation term alone reaches the decoder's weights
    assert dec.out.weight.grad is not None and dec.out.weight.grad.abs().sum() > 0


def test_spec_loss_l1_and_rmse_match_numpy_on_the_counted_frames():
    from edgensd.decoders.registry import get_decoder
    from edgensd.params import raw_to_physical
    from edgensd.speech.synth import Synthesizer, power_to_norm_t

    torch.manual_seed(1)
    voice = VoiceRange.preset("low")
    dec = get_decoder("edge", n_electrodes=5, causal=True, channels=4, dilations=[1], gru_hidden=4)
    dec.eval()
    synth = Synthesizer()
    b, t = 2, 10
    x = torch.randn(b, t, 5)
    spec = torch.rand(b, t, 256) * 2 - 1
    mel = torch.rand(b, t, 128) * 2 - 1
    pos = torch.rand(b, t, N_PARAMS)
    w = torch.ones(b, t, N_PARAMS)
    mask = torch.ones(b, t)
    mask[:, :3] = 0
    mask[1, 8:] = 0
    keep = mask > 0
    with torch.no_grad():  # an independent rendering of the same frames
        power = synth(raw_to_physical(dec(x)[keep], voice))
        d_lin = (power_to_norm_t(power) - spec[keep]).double().numpy()
        d_mel = (synth.mel_norm_from_power(power) - mel[keep]).double().numpy()
    _, l1 = train_mod.decoder_losses(dec, synth, voice, DecoderTrainConfig(), x, spec, mel, pos, w, mask)
    total, rm = train_mod.decoder_losses(dec, synth, voice, DecoderTrainConfig(spec_loss="rmse", weight_mel=0.5),
                                         x, spec, mel, pos, w, mask)
    assert l1["lin"] == pytest.approx(np.abs(d_lin).mean(), rel=1e-5)
    assert l1["mel"] == pytest.approx(np.abs(d_mel).mean(), rel=1e-5)
    assert rm["lin"] == pytest.approx(np.sqrt(np.mean(d_lin ** 2)), rel=1e-5)
    assert rm["mel"] == pytest.approx(np.sqrt(np.mean(d_mel ** 2)), rel=1e-5)
    assert rm["param"] == l1["param"]  # the parameter term does not depend on spec_loss
    assert total.item() == pytest.approx(rm["lin"] + 0.5 * rm["mel"] + rm["param"], rel=1e-5)
    total.backward()
    assert dec.out.weight.grad is not None and dec.out.weight.grad.abs().sum() > 0


def test_recipes_are_valid_configs_and_explicit_values_win():
    from edgensd.decoders.registry import get_decoder
    from edgensd.decoding.recipes import RECIPES, recipe_decoder, recipe_train

    for name in RECIPES:
        cfg = DecoderTrainConfig(**recipe_train(name))  # every recipe value passes the config's checks
        get_decoder("edge", n_electrodes=4, causal=True, **recipe_decoder(name))
        assert name != "none" or cfg == DecoderTrainConfig()
    got = recipe_train("small-data", {"aug_noise": 0.0, "lr": 3e-4})
    assert got == {"weight_decay": 0.05, "aug_dropout": 0.1, "aug_noise": 0.0, "aug_gain": 0.2, "spec_loss": "rmse",
                   "weight_pcc": 1.0, "lr": 3e-4}
    assert recipe_decoder("small-data", {"dropout": 0.2, "channels": 8}) == {"dropout": 0.2, "channels": 8}
    recipe_train("small-data")["weight_decay"] = 9.0  # callers get copies
    assert RECIPES["small-data"]["train"]["weight_decay"] == 0.05
    with pytest.raises(ValueError, match="recipe must be one of none, small-data, got 'big-data'"):
        recipe_train("big-data")


def test_auto_recipe_per_architecture():
    from edgensd.decoders import list_decoders
    from edgensd.decoding.recipes import ARCH_DEFAULTS, RECIPES, resolve_recipe

    assert set(ARCH_DEFAULTS) <= set(list_decoders()) and set(ARCH_DEFAULTS.values()) <= set(RECIPES)
    assert resolve_recipe("auto", "edge") == "small-data"
    assert [resolve_recipe("auto", a) for a in ("lstm", "resnet3d", "swin3d")] == ["none"] * 3
    assert resolve_recipe("none", "edge") == "none" and resolve_recipe("small-data", "lstm") == "small-data"
    with pytest.raises(ValueError, match="recipe must be one of auto, none, small-data, got 'big'"):
        resolve_recipe("big", "edge")
