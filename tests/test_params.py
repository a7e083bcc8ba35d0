"""Speech parameters: names, units, ranges, raw → physical map."""

import numpy as np
import pytest
import torch

from edgensd import params as P


def test_names_and_units():
    assert P.N_PARAMS == 18 and len(set(P.PARAM_NAMES)) == 18
    assert P.PARAM_UNITS["f0_hz"] == "Hz" and P.PARAM_UNITS["loudness_db"] == "dB" and P.PARAM_UNITS["a3"] == "1"
    assert P.PARAM_NAMES[P.FU] == "fu_hz" and P.PARAM_NAMES[P.AU] == "au"


@pytest.mark.parametrize("preset", ["low", "high"])
def test_raw_physical_roundtrip_and_bounds(preset):
    v = P.VoiceRange.preset(preset)
    lo, hi = v.bounds()
    raw = np.random.default_rng(0).normal(0, 3, (500, 18)).astype(np.float32)
    phys = P.raw_to_physical(raw, v)
    assert np.all(phys >= lo - 1e-3) and np.all(phys <= hi + 1e-3)
    np.testing.assert_allclose(P.physical_to_raw(phys, v), raw, atol=2e-3)
    t = P.raw_to_physical(torch.tensor(raw), v).numpy()
    np.testing.assert_allclose(t, phys, rtol=1e-4, atol=1e-3)
    # f0 is log-scaled: raw 0 maps to the geometric mean of the range
    mid = P.raw_to_physical(np.zeros(18, np.float32), v)
    assert mid[P.F0] == pytest.approx(np.sqrt(v.f0_hz[0] * v.f0_hz[1]), rel=1e-4)


def test_voice_range_json_roundtrip(tmp_path):
    v = P.VoiceRange.preset("low")
    v2 = P.VoiceRange.load(v.save(tmp_path / "v.json"))
    assert v2 == v and v2.same_as(v) and not v2.same_as(P.VoiceRange.preset("high"))


def test_voice_range_errors():
    with pytest.raises(ValueError, match=r"one of \['low', 'high'\]"):
        P.VoiceRange.preset("soprano")
    with pytest.raises(ValueError, match="lo < hi"):
        P.VoiceRange(f0_hz=(300, 100))
    with pytest.raises(ValueError, match="8 kHz"):
        P.VoiceRange(fu_hz=(1000, 9000))
    with pytest.raises(ValueError, match="unknown config keys"):
        P.VoiceRange.from_dict({"name": "x", "pitch": 3})


def test_clamp_and_checks():
    v = P.VoiceRange()
    lo, hi = v.bounds()
    x = ((lo + hi) / 2).astype(np.float32)
    x[P.F0] = np.nan
    x[P.LOUD] = np.inf
    x[P.ALPHA] = 7.0
    c, n = P.clamp_physical(x, v)
    assert n == 3 and np.all(np.isfinite(c)) and c[P.F0] == lo[P.F0] and c[P.LOUD] == hi[P.LOUD] and c[P.ALPHA] == 1
    with pytest.raises(ValueError, match="NaN"):
        P.check_param_frames(x[None])
    with pytest.raises(ValueError, match="shape"):
        P.check_param_frames(np.zeros((3, 17)))
    d = P.params_to_dict(c[None])
    np.testing.assert_array_equal(P.dict_to_params(d), c[None])
