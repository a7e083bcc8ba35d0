"""Side-by-side cost of every registered decoder: MACs/frame, parameters, look-ahead, step latency.

Usage::

    python bench/decoder_macs.py [--n-electrodes 64] [--steps 200] [--json OUT]

Each registered decoder is built with its default config, causal and (where it exists) non-causal. MACs
per frame are counted by :func:`edgensd.decoders.macs_per_frame` (causal: one streaming step; non-causal:
a 128-frame forward divided by 128); look-ahead is measured by perturbing input frames
(:func:`edgensd.decoders.measure_lookahead`); latency is the median time of one ``step`` on the CPU with
batch 1 and ``torch.set_num_threads(1)`` (non-causal: a 128-frame forward divided by 128, marked ``*``).
Weights are random: costs do not depend on training.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch

from edgensd.decoders import (
    get_decoder,
    get_decoder_class,
    list_decoders,
    macs_per_frame,
    measure_lookahead,
    n_params,
    step_latency,
)

FRAME_MS = 8.0


def measure_all(n_electrodes: int, steps: int) -> list[dict]:
    """Build every model variant and measure it; return one row per model."""
    rows = []
    for name in list_decoders():
        variants = [True] if get_decoder_class(name).causal_only else [True, False]
        for causal in variants:
            torch.manual_seed(0)
            model = get_decoder(name, n_electrodes=n_electrodes, causal=causal).eval()
            state_floats = sum(s.numel() for s in model.init_state(1)) if causal else None
            rows.append(
                {
                    "model": name,
                    "causal": causal,
                    "macs_per_frame": macs_per_frame(model),
                    "n_params": n_params(model),
                    "lookahead_frames": measure_lookahead(model, n_frames=128),
                    "state_floats": state_floats,
                    "latency_us": step_latency(model, n_steps=steps) * 1e6,
                }
            )
    ref = next(r["macs_per_frame"] for r in rows if r["model"] == "resnet3d" and r["causal"])
    for r in rows:
        r["macs_vs_causal_resnet3d"] = r["macs_per_frame"] / ref
    return rows


def to_markdown(rows: list[dict], n_electrodes: int) -> str:
    """Format the rows as a markdown table."""
    lines = [
        f"Decoders at {n_electrodes} electrodes (random weights; CPU, batch 1, 1 thread; "
        f"torch {torch.__version__}, {platform.machine()})",
        "",
        "| model | variant | MACs/frame | vs causal resnet3d | params | look-ahead (frames / ms) "
        "| state floats | latency/frame (us) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        look = r["lookahead_frames"]
        look_txt = f"{look} / {look * FRAME_MS:.0f}" if look < 127 else f">= {look} (unbounded)"
        lines.append(
            f"| {r['model']} | {'causal' if r['causal'] else 'non-causal'} | {r['macs_per_frame']:,.0f} "
            f"| 1/{1 / r['macs_vs_causal_resnet3d']:.1f} | {r['n_params']:,} | {look_txt} "
            f"| {'-' if r['state_floats'] is None else format(r['state_floats'], ',')} "
            f"| {r['latency_us']:,.0f}{'' if r['causal'] else ' *'} |"
        )
    lines += ["", "* non-causal: no step; whole 128-frame forward / 128."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-electrodes", type=int, default=64, help="electrode count (default 64, an 8x8 grid)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per causal model (default 200)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = measure_all(args.n_electrodes, args.steps)
    print(to_markdown(rows, args.n_electrodes))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
