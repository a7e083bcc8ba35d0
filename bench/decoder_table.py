"""The seven-model decoder table of issue 4: train, evaluate, occlude and compare every decoder.

Usage::

    python bench/decoder_table.py --data P.h5 --speech-model SM_DIR --out OUT \\
        [--minutes 30] [--jobs 2] [--threads 1] [--occlusion-trials 10] [--models edge:c,lstm:nc,...] \\
        [--recipe auto|none|small-data]

Models (default all seven): ``resnet3d``, ``swin3d`` and ``lstm``, each causal (``:c``) and non-causal
(``:nc``), and ``edge`` (causal). For each model it runs, as subprocesses (at most ``--jobs`` at once, each
with ``--threads`` torch threads)::

    edgensd train decoder --data P.h5 --speech-model SM --arch A --causal|--non-causal --out OUT/A_c \\
        --max-minutes M --threads T --cache-dir OUT/cache --recipe R
    edgensd eval decoder --model OUT/A_c --data P.h5 --json OUT/A_c/eval.json --plots OUT/A_c/plots \\
        --wav-dir OUT/A_c/wav --cache-dir OUT/cache --threads T
    edgensd occlusion --model OUT/A_c --data P.h5 --out OUT/A_c/occlusion --max-trials K \\
        --cache-dir OUT/cache --threads T          # causal models only

and finally ``edgensd compare --evals OUT/*/eval.json --occlusions ... --out OUT/compare --reference
best-noncausal`` (each model's paired per-trial difference from the best non-causal one). The shared cache
(reference parameters, ridge baselines) is filled once before the jobs start. Every command, its wall time
and its exit status are appended to ``OUT/COMMANDS.md``. Re-running resumes: a model whose training is done
is not retrained (its checkpoint says so), and existing eval/occlusion JSONs are kept unless ``--redo``.

A participant simulated from all Allison prompts (LD 8x8, left hemisphere), as the issue asks::

    edgensd data speech --out data/speech
    edgensd train speech --data data/speech/speech.h5 --out runs/speech --max-minutes 30
    edgensd simulate --speech data/speech/speech.h5 --layout ld8x8 --hemisphere left --seed 0 --out sim/p0.h5
    python bench/decoder_table.py --data sim/p0.h5 --speech-model runs/speech --out runs/table --minutes 30
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgensd.decoding.recipes import AUTO, RECIPES

ALL_MODELS = ("resnet3d:c", "resnet3d:nc", "swin3d:c", "swin3d:nc", "lstm:c", "lstm:nc", "edge:c")


def _log(out: Path, lock: threading.Lock, text: str) -> None:
    with lock, open(out / "COMMANDS.md", "a") as f:
        f.write(text + "\n")


def _run(cmd: list[str], out: Path, lock: threading.Lock, log_path: Path) -> int:
    t0 = time.time()
    with open(log_path, "a") as logf:
        rc = subprocess.call(cmd, stdout=logf, stderr=subprocess.STDOUT)
    line = " ".join(shlex.quote(c) for c in cmd)
    _log(out, lock, f"- `{line}`  \n  exit {rc}, {time.time() - t0:.0f} s wall, {time.strftime('%H:%M:%S')} UTC")
    return rc


def _model_job(spec: str, args, out: Path, lock: threading.Lock) -> dict:
    arch, var = spec.split(":")
    causal = var == "c"
    name = f"{arch}_{'c' if causal else 'nc'}"
    mdir = out / name
    mdir.mkdir(parents=True, exist_ok=True)
    log_path = mdir / "run.log"
    exe = [sys.executable, "-m", "edgensd.cli.main"]
    res = {"model": name}
    ckpt_done = False
    info = mdir / "decoder_info.json"
    if info.is_file():
        ckpt_done = bool(json.loads(info.read_text()).get("done"))
    if not ckpt_done or args.redo:
        rc = _run(exe + ["train", "decoder", "-q", "--data", args.data, "--speech-model", args.speech_model,
                         "--arch", arch, "--causal" if causal else "--non-causal", "--out", str(mdir),
                         "--max-minutes", str(args.minutes), "--threads", str(args.threads), "--seed",
                         str(args.seed), "--cache-dir", str(out / "cache"), "--recipe", args.recipe], out, lock,
                        log_path)
        if rc:
            res["error"] = f"training exited {rc}; see {log_path}"
            return res
    ev = mdir / "eval.json"
    if not ev.is_file() or args.redo:
        rc = _run(exe + ["eval", "decoder", "-q", "--model", str(mdir), "--data", args.data, "--json", str(ev),
                         "--plots", str(mdir / "plots"), "--wav-dir", str(mdir / "wav"), "--max-wavs", "5",
                         "--cache-dir", str(out / "cache"), "--threads", str(args.threads)], out, lock, log_path)
        if rc:
            res["error"] = f"evaluation exited {rc}; see {log_path}"
            return res
    res["eval"] = str(ev)
    if causal and args.occlusion_trials > 0:
        oj = mdir / "occlusion" / "occlusion.json"
        if not oj.is_file() or args.redo:
            _run(exe + ["occlusion", "-q", "--model", str(mdir), "--data", args.data, "--out", str(mdir / "occlusion"),
                        "--max-trials", str(args.occlusion_trials), "--cache-dir", str(out / "cache"), "--threads",
                        str(args.threads)], out, lock, log_path)
        if oj.is_file():
            res["occlusion"] = str(oj)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="participant file")
    ap.add_argument("--speech-model", required=True, help="speech model directory")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--minutes", type=float, default=30.0, help="training budget per model (default 30)")
    ap.add_argument("--jobs", type=int, default=1, help="models trained at once (default 1)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--occlusion-trials", type=int, default=10,
                    help="held-out trials for occlusion of the causal models (0: skip; default 10)")
    ap.add_argument("--models", default=",".join(ALL_MODELS), help="comma-separated arch:c|nc list")
    ap.add_argument("--recipe", default=AUTO, choices=(AUTO, *RECIPES),
                    help="`edgensd train decoder --recipe` for every model (default auto: small-data for edge, "
                         "none for the others; the README's table used none)")
    ap.add_argument("--redo", action="store_true", help="retrain / re-evaluate even when results exist")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in ALL_MODELS:
            ap.error(f"--models entries must be among {ALL_MODELS}, got {m!r}")
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    _log(out, lock, f"\n## run started {started} UTC\n\n`{' '.join(map(shlex.quote, sys.argv))}`\n\n"
                    f"{args.minutes} min per model, {args.jobs} job(s) at once, {args.threads} thread(s) each\n")
    t0 = time.time()
    import torch

    torch.set_num_threads(max(1, args.threads * args.jobs))
    from edgensd.decoding.evaluate import prepare_cache

    prepare_cache(args.data, args.speech_model, out / "cache")
    _log(out, lock, f"- cache (reference parameters, ridge baselines) ready in {time.time() - t0:.0f} s")
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda m: _model_job(m, args, out, lock), models))
    evals = [r["eval"] for r in results if "eval" in r]
    occl = [r["occlusion"] for r in results if "occlusion" in r]
    for r in results:
        if "error" in r:
            print(f"{r['model']}: {r['error']}", file=sys.stderr)
    if evals:
        cmd = [sys.executable, "-m", "edgensd.cli.main", "compare", "-q", "--evals", *evals, "--out",
               str(out / "compare"), "--reference", "best-noncausal" if any(":nc" in m for m in models) else "best"]
        if occl:
            cmd += ["--occlusions", *occl]
        _run(cmd, out, lock, out / "compare.log")
        print((out / "compare" / "compare.md").read_text())
    _log(out, lock, f"- total {time.time() - t0:.0f} s")
    return 0 if len(evals) == len(models) else 1


if __name__ == "__main__":
    sys.exit(main())
