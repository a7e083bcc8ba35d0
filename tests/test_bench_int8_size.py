"""bench/bench_int8_size.py: its byte breakdown of a bundle's int8 models against the decoder's own counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from export_setup import edge_bundle
from script_loader import load_script
from test_export_litert import build_models

from edgensd.decoding.train import load_trained_decoder

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_int8_size.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH)


def _counts(dec):
    mats = [p for n, p in dec.named_parameters() if n.endswith("weight")]
    n_bias = sum(p.numel() for n, p in dec.named_parameters() if n.endswith("bias"))
    return sum(p.numel() for p in mats), n_bias, sum(p.shape[0] for p in mats)


def _check_sums(r):
    parts = r["breakdown"]
    assert sum(parts.values()) == r["bytes"] and parts["graph_and_framing"] > 0


def test_onnx_breakdown_matches_the_decoder(bench, tmp_path_factory):
    d = edge_bundle(tmp_path_factory)  # a trained edge decoder exported through the CLI
    n_weights, n_bias, out_channels = _counts(load_trained_decoder(d / "edge").decoder)
    r = bench.onnx_breakdown(d / "bundle_cli" / "decoder_int8.onnx")
    _check_sums(r)
    assert r["breakdown"]["weights"] == n_weights  # one byte per weight, nothing else
    assert r["breakdown"]["biases"] == 4 * n_bias  # int32
    # a float scale per output channel of every weight matrix, and per bias element (input x weight scale)
    assert r["per_channel_scales"] == out_channels + n_bias


@pytest.mark.parametrize("arch", ["edge", "lstm"])
def test_tflite_breakdown_matches_the_decoder(bench, tmp_path_factory, arch):
    m = build_models(tmp_path_factory)[arch]  # int8 LiteRT step graphs of tests/test_export_litert.py
    n_weights, n_bias, out_channels = _counts(m["step"])
    r = bench.tflite_breakdown(m["int8_path"])
    _check_sums(r)
    assert n_weights <= r["breakdown"]["weights"] <= n_weights + 16  # (plus a few int8 scalar constants)
    assert r["breakdown"]["biases"] == 4 * n_bias
    assert r["per_channel_scales"] >= out_channels + n_bias
    assert r["breakdown"]["qparams_per_channel"] == 12 * r["per_channel_scales"]  # float32 scale + int64 zero point


def test_cli_reports_a_missing_bundle(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["bench_int8_size.py", "--bundle", str(tmp_path / "nope")])
    with pytest.raises(SystemExit, match="not a folder"):
        bench.main()
