"""What Ray costs an ``edgensd sweep``: start-up of a local instance, a task's round trip, and the whole
two-task sweep that CI runs.

Usage::

    python bench/bench_sweep.py [--repeats 3] [--cpus 2] [--minutes 0.1] [--work DIR] [--json OUT]

Three measurements, each in wall time (the machine's other load moves them; run it on a quiet machine for
figures to quote):

* Ray start-up: ``edgensd.sweep.runner.start_ray(num_cpus=--cpus)`` (a local instance as the sweep starts it:
  no dashboard, 100 MiB object store, quiet), then the first no-op task (a worker process is started and
  imports Python), then a no-op task on the warm worker, then ``stop()``; ``--repeats`` times, median and range.
* A stage-1-free sweep task's overhead is in the sweep figure below: the task's own ``seconds`` (from its
  ``done.json``) against the wall time of the command.
* The two-task sweep of ``tests/test_sweep.py``: a 64-electrode LD participant simulated from 6 real Allison
  prompts (2 held out), the shipped demo speech model shared, ``edge`` and ``lstm`` (tiny configs) causal,
  ``--minutes`` each, no STOI, ``--cpus 1`` (the tasks run one after the other), as a fresh
  ``python -m edgensd sweep`` process: wall time, Ray's start as the sweep logged it, and each task's time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEECH_MODEL = REPO / "edgensd" / "assets" / "demo" / "speech_model"
OVERRIDES = {"edge": {"channels": 8, "dilations": [1, 2], "gru_hidden": 8},
             "lstm": {"hidden_size": 16, "num_layers": 1}}


def _noop() -> int:
    return os.getpid()


def ray_startup(repeats: int, cpus: int) -> dict:
    import ray

    from edgensd.sweep.runner import start_ray

    rows = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        s = start_ray(num_cpus=cpus)
        t1 = time.perf_counter()
        f = ray.remote(_noop)
        ray.get(f.remote())
        t2 = time.perf_counter()
        ray.get(f.remote())
        t3 = time.perf_counter()
        s.stop()
        t4 = time.perf_counter()
        rows.append({"init_s": t1 - t0, "first_task_s": t2 - t1, "warm_task_ms": 1000 * (t3 - t2),
                     "shutdown_s": t4 - t3, "total_s": t4 - t0})
    return {k: {"median": statistics.median(r[k] for r in rows), "min": min(r[k] for r in rows),
                "max": max(r[k] for r in rows)} for k in rows[0]}


def two_task_sweep(work: Path, minutes: float) -> dict:
    from edgensd.data.participant import save_participant
    from edgensd.data.speech import SpeechDataConfig, build_speech_participant
    from edgensd.neural.simulate import SimulationConfig, simulate, write_simulation

    work.mkdir(parents=True, exist_ok=True)
    data = work / "p.h5"
    if not data.is_file():
        sp, _ = build_speech_participant(SpeechDataConfig(max_prompts=6, n_test=2))
        save_participant(sp, work / "speech.h5")
        res = simulate(SimulationConfig(speech=str(work / "speech.h5"), layout="ld8x8", seed=3, trial_gap_s=0.8),
                       verbose="warning")
        write_simulation(res, data)
    out = Path(tempfile.mkdtemp(prefix="sweep-", dir=work))
    argv = [sys.executable, "-m", "edgensd", "sweep", "--participants", str(data), "--archs", "edge,lstm",
            "--causal", "causal", "--out", str(out), "--speech-model", str(SPEECH_MODEL), "--minutes", str(minutes),
            "--batch-size", "4", "--no-stoi", "--cpus", "1", "--decoder-config", json.dumps(OVERRIDES)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the sweep failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    m = re.search(r"Ray started on this machine \(\d+ CPUs\) in ([0-9.]+) s", proc.stderr)
    tasks = {d.parent.name: json.loads(d.read_text())["seconds"] for d in sorted(out.glob("tasks/p/*/done.json"))}
    return {"wall_s": wall, "ray_start_s": float(m.group(1)) if m else None, "task_s": tasks, "out": str(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=0.1, help="stage-2 budget of each tiny decoder")
    ap.add_argument("--work", default=None, help="folder for the participant and the sweep (default: a temp dir)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    ray_s = ray_startup(args.repeats, args.cpus)
    print(f"Ray start-up, local, {args.cpus} CPUs ({args.repeats} runs; median [min, max]):")
    for k, unit in (("init_s", "s"), ("first_task_s", "s"), ("warm_task_ms", "ms"), ("shutdown_s", "s"),
                    ("total_s", "s")):
        v = ray_s[k]
        print(f"  {k:<14} {v['median']:8.2f} {unit}  [{v['min']:.2f}, {v['max']:.2f}]")
    sw = two_task_sweep(work, args.minutes)
    print(f"two-task sweep (edge + lstm, {args.minutes:g} min each, 1 CPU, shared speech model):")
    print(f"  wall {sw['wall_s']:.1f} s; Ray start {sw['ray_start_s']} s; tasks (s): "
          + ", ".join(f"{k} {v:.1f}" for k, v in sw["task_s"].items()))
    print(f"  machine load average now: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps({"ray_startup": ray_s, "sweep": sw, "args": vars(args),
                                               "loadavg": os.getloadavg()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
