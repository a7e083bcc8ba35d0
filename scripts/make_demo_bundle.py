"""Build the demo bundle shipped in ``edgensd/assets/demo/`` from a trained speech model.

Usage::

    python scripts/make_demo_bundle.py --model runs/speech --data data/speech/speech.h5 [--n 4]

Copies the model's ``model.pt``, ``speech_model.json`` and ``synth_weights.npz`` into
``edgensd/assets/demo/speech_model/`` and writes ``n`` held-out utterances (spread over the test split) as
16-bit WAV with an attribution file. The bundle's data derive from the Allison prompts: CC-BY-SA-3.0.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from edgensd.audio import save_wav
from edgensd.data.participant import load_participant, trial_split
from edgensd.speech.features import CONTEXT

ATTRIBUTION = """Demo utterances: prompts from the Debian package asterisk-core-sounds-en-g722,
"Recorded by Allison Smith", licensed CC-BY-SA-3.0 (https://creativecommons.org/licenses/by-sa/3.0/).
The speech model in speech_model/ was trained on the other prompts of the same set and is distributed
under the same licence. Each WAV carries {ctx} frames (128 ms) of context on both sides of the prompt.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=4)
    args = ap.parse_args()
    dest = Path(__file__).resolve().parents[1] / "edgensd" / "assets" / "demo"
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "speech_model").mkdir(parents=True)
    for name in ("model.pt", "speech_model.json", "synth_weights.npz"):
        shutil.copy2(Path(args.model) / name, dest / "speech_model" / name)
    p = load_participant(args.data, require_neural=False)
    _, test = trial_split(p)
    picks = test[np.linspace(0, len(test) - 1, args.n).round().astype(int)]
    for i in picks:
        name = (p.prompt_names[int(i)] if p.prompt_names else f"trial{int(i)}").replace("/", "_")
        save_wav(dest / f"{name}.wav", p.trial_audio(int(i), before=CONTEXT, after=CONTEXT))
    (dest / "ATTRIBUTION.txt").write_text(ATTRIBUTION.format(ctx=CONTEXT))
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"demo bundle in {dest}: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
