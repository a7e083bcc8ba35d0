"""``edgensd sweep`` on local Ray: a two-task sweep killed mid-run and resumed without redoing its finished task,
the report (bootstrap on known numbers, layouts, plots), and bad input refused before any work."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from edgensd.cli.main import main
from edgensd.demo import demo_dir
from edgensd.sweep import runner
from edgensd.sweep.config import SweepConfig, SweepConfigError, check_resume, decoder_task_dir, participant_layout
from edgensd.sweep.report import bootstrap_mean_ci, collect_rows, compare_to_best_noncausal, markdown, summarize_groups

SPEECH_MODEL = demo_dir() / "speech_model"
OVERRIDES = {"edge": {"channels": 8, "dilations": [1, 2], "gru_hidden": 8},
             "lstm": {"hidden_size": 16, "num_layers": 1}}
MINUTES = "0.1"  # stage-2 budget of each tiny decoder (6 s)
TRAIN = {"weight_decay": 0.001}  # a stage-2 training override, passed to every decoder


def _argv(data, out, *extra, shared: bool = False) -> list[str]:
    """The test sweep: stage 1 trains each participant's speech model for 0.6 s (or, ``shared``, the demo
    speech model serves all), then tiny edge and lstm decoders, causal, one CPU (one task after another)."""
    stage1 = ["--speech-model", str(SPEECH_MODEL)] if shared else ["--speech-minutes", "0.01"]
    return ["sweep", "--participants", str(data), "--archs", "edge,lstm", "--causal", "causal", "--out", str(out),
            *stage1, "--minutes", MINUTES, "--batch-size", "4", "--no-stoi", "--cpus", "1", "--decoder-config",
            json.dumps(OVERRIDES), "--train-config", json.dumps(TRAIN), *extra]


@pytest.fixture(scope="module")
def participant(tmp_path_factory):
    """A 64-electrode LD participant simulated from 6 real prompts (2 held out)."""
    from edgensd.data.participant import save_participant
    from edgensd.data.speech import SpeechDataConfig, build_speech_participant
    from edgensd.neural.simulate import SimulationConfig, simulate, write_simulation

    d = tmp_path_factory.mktemp("sweep_data")
    sp, _ = build_speech_participant(SpeechDataConfig(max_prompts=6, n_test=2))
    save_participant(sp, d / "speech.h5")
    res = simulate(SimulationConfig(speech=str(d / "speech.h5"), layout="ld8x8", seed=3, trial_gap_s=0.8),
                   verbose="warning")
    write_simulation(res, d / "p.h5")
    return d / "p.h5"


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance for the in-process sweeps of this module (the sweep reuses it)."""
    s = runner.start_ray(num_cpus=2)
    yield s
    s.stop()


def _wait_for(cond, proc, timeout_s: float, what: str) -> None:
    t0 = time.time()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended (rc {proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.time() - t0 > timeout_s:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def killed(participant, tmp_path_factory, request):
    """A two-task sweep (edge, lstm; one CPU, so one after the other) in a subprocess, stopped by SIGTERM once
    edge is done and lstm has trained a few steps; then resumed in this process on the module's Ray."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "edgensd", *_argv(participant, out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        request.getfixturevalue("ray_session")  # started meanwhile
        edge, lstm = out / "tasks/p/edge_causal", out / "tasks/p/lstm_causal"
        _wait_for(lambda: (edge / "done.json").is_file() and (lstm / "model/train_log.jsonl").is_file(), proc, 600,
                  "edge's done marker and lstm's first steps")
        assert not (lstm / "done.json").exists()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    at_kill = {"rc": proc.returncode, "stderr": err, "edge_done": (edge / "done.json").read_bytes(),
               "edge_done_mtime": (edge / "done.json").stat().st_mtime_ns,
               "lstm_checkpoint": (lstm / "model/checkpoint.pt").is_file(), "lstm_done": (lstm / "done.json").exists()}
    t0 = time.time()
    records = request.getfixturevalue("module_log")
    rc = main(_argv(participant, out))
    return {"out": out, "at_kill": at_kill, "rc": rc, "resume_s": time.time() - t0,
            "resume_log": [r.getMessage() for r in records]}


@pytest.fixture(scope="module")
def module_log():
    """Records of the package logger while the module's fixtures run."""
    import logging

    from edgensd.log import logger

    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    h = _Keep(level=logging.INFO)
    logger.addHandler(h)
    yield records
    logger.removeHandler(h)


def _attempts(task_dir: Path) -> int:
    return len((task_dir / "attempts.jsonl").read_text().splitlines())


def test_killed_sweep_resumes_without_redoing_finished_tasks(killed):
    out, k = killed["out"], killed["at_kill"]
    assert k["rc"] == 130 and "interrupted" in k["stderr"], k["stderr"][-2000:]
    # one progress line per finished task: participant, arch, causality, PCC, ridge PCC, time
    assert "[1/2] p edge causal: PCC " in k["stderr"] and ", ridge " in k["stderr"] and " min (" in k["stderr"]
    assert k["lstm_checkpoint"] and not k["lstm_done"]  # cancelled lstm wrote its checkpoint
    assert killed["rc"] == 0
    edge, lstm = out / "tasks/p/edge_causal", out / "tasks/p/lstm_causal"
    # the finished task was not run again: same marker, one attempt; the stopped one resumed its checkpoint
    assert (edge / "done.json").read_bytes() == k["edge_done"]
    assert (edge / "done.json").stat().st_mtime_ns == k["edge_done_mtime"]
    (model_task,) = (out / "speech").iterdir()  # the recording's speech model, trained once
    assert _attempts(edge) == 1 and _attempts(out / "tasks/p/speech") == 1 and _attempts(model_task) == 1
    stage1 = json.loads((out / "tasks/p/speech/done.json").read_text())
    assert stage1["speech_train_steps"] >= 1 and not stage1["shared_speech_model"]
    assert stage1["speech_key"] == model_task.name == json.loads((model_task / "done.json").read_text())["speech_key"]
    assert (model_task / "model/model.pt").is_file() and not (out / "tasks/p/speech/model").exists()
    assert sorted(p.name.split("_")[0] for p in (out / "tasks/p/cache").iterdir()) == ["reference", "ridge", "ridge"]
    assert _attempts(lstm) == 2
    assert "resuming from" in (lstm / "task.log").read_text()
    log = "\n".join(killed["resume_log"])
    assert "1 finished, 1 to run (+0 stage 1; 1 speech model for 1 participant, 0 to train)" in log
    assert "[2/2] p lstm causal: PCC " in log and "p edge causal: PCC" not in log
    done = json.loads((lstm / "done.json").read_text())
    assert done["speech_model"] == str(model_task / "model")
    assert done["attempt"] == 2 and done["fingerprint"]["minutes"] == float(MINUTES)
    assert done["fingerprint"]["train"] == TRAIN
    for task in (edge, lstm):  # the override reached both trainings ...
        assert json.loads((task / "model/train_config.json").read_text())["weight_decay"] == TRAIN["weight_decay"]
    # ... and --recipe auto's small-data only edge's, under it
    assert [json.loads((t / "model/train_config.json").read_text())["weight_pcc"] for t in (edge, lstm)] == [1.0, 0.0]
    assert done["train_seconds"] >= 0.9 * 60 * float(MINUTES)  # both runs together used the budget
    r = json.loads((out / "results.json").read_text())
    assert [(x["arch"], x["causal"]) for x in r["rows"]] == [("edge", True), ("lstm", True)]
    assert r["missing"] == [] and r["n_finished"] == 2
    for x in r["rows"]:
        assert -1 <= x["pcc_mean"] <= 1 and 0 < x["ridge_pcc_mean"] <= 1 and x["layout"] == "LD"
        assert x["diff_vs_ridge"] == pytest.approx(x["pcc_mean"] - x["ridge_pcc_mean"])
    cfg = json.loads((out / "sweep_config.json").read_text())
    assert cfg["_type"] == "SweepConfig" and cfg["archs"] == ["edge", "lstm"] and len(cfg["participant_sha256"]) == 1


def test_rerun_runs_nothing(killed, participant, edgensd_log, monkeypatch):
    def no_ray(*a, **k):
        raise AssertionError("Ray started although every task is finished")

    def no_reload(*a, **k):
        raise AssertionError("a participant file with unchanged content was loaded again for its speech key")

    monkeypatch.setattr(runner, "start_ray", no_ray)
    monkeypatch.setattr("edgensd.data.participant.speech_key", no_reload)
    out = killed["out"]
    before = {p: p.stat().st_mtime_ns for p in (out / "tasks").rglob("done.json")}
    assert main(_argv(participant, out)) == 0
    assert "every task is finished: nothing to run" in " ".join(r.getMessage() for r in edgensd_log)
    assert {p: p.stat().st_mtime_ns for p in (out / "tasks").rglob("done.json")} == before


def test_report_only_rewrites_the_report(killed, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(killed["out"], out)
    for name in ("results.json", "results.md", "cohort_causal_vs_noncausal.png", "cohort_layout.png"):
        (out / name).unlink()
    shutil.rmtree(out / "tasks/p/lstm_causal")  # an unfinished task is listed as missing
    # a done.json from before the non-causal ridge key: the report reads it from the task's eval.json
    done_path = out / "tasks/p/edge_causal/done.json"
    done = json.loads(done_path.read_text())
    ridge_nc = done.pop("ridge_noncausal_pcc_mean")
    done_path.write_text(json.dumps(done))
    evaluated = json.loads((out / "tasks/p/edge_causal/eval.json").read_text())
    assert ridge_nc == evaluated["baselines"]["ridge_noncausal_pcc_mean"]
    assert main(["sweep", "-q", "--report-only", "--out", str(out)]) == 0
    md = (out / "results.md").read_text()
    assert "| p | LD | edge | causal |" in md and "Not finished (1): p/lstm_causal" in md
    assert "| edge | causal | 1 |" in md and "– (n = 1)" in md
    for png in ("cohort_causal_vs_noncausal.png", "cohort_layout.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = json.loads((out / "results.json").read_text())
    assert r["missing"] == ["p/lstm_causal"] and r["groups"][0]["pcc"]["ci"] is None
    # no non-causal decoder was trained: the causal one is compared with the non-causal ridge
    (c,) = r["vs_best_noncausal"]
    assert c["reference"] == "ridge" and c["reference_pcc_mean"] == pytest.approx(ridge_nc)
    assert c["diff"]["mean"] == pytest.approx(evaluated["pcc_mean"] - ridge_nc) and c["diff"]["n"] == 1
    assert f"| edge | ridge | {ridge_nc:.3f} | 1 |" in md


def test_a_run_with_other_archs_on_the_same_out_reports_the_earlier_tasks(killed, participant, tmp_path,
                                                                        edgensd_log, monkeypatch):
    """Resuming with ``--archs lstm`` only: nothing runs, and the report still holds the edge task of the earlier
    run (same settings); an earlier task with other settings is left out with a warning."""
    monkeypatch.setattr(runner, "start_ray", lambda *a, **k: pytest.fail("Ray started with every task finished"))
    out = tmp_path / "copy"
    shutil.copytree(killed["out"], out)
    argv = _argv(participant, out)
    argv[argv.index("--archs") + 1] = "lstm"
    argv[argv.index("--decoder-config") + 1] = json.dumps({"lstm": OVERRIDES["lstm"]})
    assert main(argv) == 0
    r = json.loads((out / "results.json").read_text())
    assert json.loads((out / "sweep_config.json").read_text())["archs"] == ["lstm"]
    assert [(x["arch"], x.get("earlier_run", False)) for x in r["rows"]] == [("lstm", False), ("edge", True)]
    assert r["archs"] == ["lstm", "edge"] and r["earlier_run"] == ["p/edge_causal"] and r["n_finished"] == 2
    assert [g["arch"] for g in r["groups"]] == ["lstm", "edge"] and r["missing"] == []
    md = (out / "results.md").read_text()
    assert "(this run: causal; 1 of them from earlier runs on the same folder with the same settings: " \
           "edge_causal); 2 of 2 tasks finished" in md and "| p | LD | edge | causal |" in md
    # an earlier task that ran with another budget is not mixed in
    done_path = out / "tasks/p/edge_causal/done.json"
    done = json.loads(done_path.read_text())
    done["fingerprint"]["minutes"] = 99.0
    done_path.write_text(json.dumps(done))
    edgensd_log.clear()
    assert main(["sweep", "-q", "--report-only", "--out", str(out)]) == 0
    r = json.loads((out / "results.json").read_text())
    assert [x["arch"] for x in r["rows"]] == ["lstm"] and r["earlier_run"] == [] and r["archs"] == ["lstm"]
    warned = " ".join(x.getMessage() for x in edgensd_log if x.levelname == "WARNING")
    assert "edge_causal: finished with other settings" in warned and "'minutes': 99.0" in warned


def _logged(records) -> str:
    msg = " ".join(r.getMessage() for r in records if r.levelname == "ERROR")
    records.clear()
    return msg


def test_changed_settings_on_an_existing_out_are_refused(killed, participant, tmp_path, edgensd_log):
    out = killed["out"]
    before = sorted(p.name for p in out.iterdir())
    argv = _argv(participant, out)
    argv[argv.index("--minutes") + 1] = "0.2"
    assert main(argv) == 2
    assert "minutes: 0.1 → 0.2" in _logged(edgensd_log)
    # the same participant name with other content
    other = tmp_path / "p.h5"
    shutil.copy(participant, other)
    with h5py.File(other, "a") as f:
        f.attrs["note"] = "changed"
    assert main(_argv(other, out)) == 2
    msg = _logged(edgensd_log)
    assert "participant 'p' file content" in msg and "another --out" in msg
    assert main(_argv(participant, out, shared=True)) == 2  # a shared speech model instead of stage 1
    assert "speech_model: '(trained per participant)' → " in _logged(edgensd_log)
    assert sorted(p.name for p in out.iterdir()) == before
    # a finished task whose own fingerprint differs (e.g. a hand-copied folder) is refused too
    cfg = SweepConfig.load(out / "sweep_config.json")
    other_out = tmp_path / "o"
    shutil.copytree(out, other_out)
    done = json.loads((other_out / "tasks/p/edge_causal/done.json").read_text())
    done["fingerprint"]["batch_size"] = 99
    (other_out / "tasks/p/edge_causal/done.json").write_text(json.dumps(done))
    with pytest.raises(SweepConfigError, match="edge_causal finished with other settings"):
        runner.plan_sweep(cfg, other_out)


def test_bad_input_is_refused_before_any_work(participant, tmp_path, edgensd_log, monkeypatch, capsys):
    def no_ray(*a, **k):
        raise AssertionError("Ray started on bad input")

    monkeypatch.setattr(runner, "start_ray", no_ray)
    out = tmp_path / "out"

    def refused(argv, *expected):
        assert main(argv) == 2
        msg = _logged(edgensd_log)
        for e in expected:
            assert e in msg, msg

    refused(_argv(tmp_path / "missing.h5", out), "--participants: no such file", "missing.h5")
    refused(_argv(SPEECH_MODEL / "model.pt", out), "--participants:")
    argv = _argv(participant, out)
    argv[argv.index("--archs") + 1] = "edge,transformer"
    refused(argv, "--archs: unknown architecture 'transformer'", "edge, lstm, resnet3d, swin3d")
    argv[argv.index("--archs") + 1] = "ridge"
    refused(argv, "--archs: 'ridge' is the linear baseline", "edge, lstm, resnet3d, swin3d")
    argv = _argv(participant, out)
    argv[argv.index("--causal") + 1] = "noncausal"
    refused(argv, "['edge'] exist only as causal models")
    argv = _argv(participant, out, shared=True)
    argv[argv.index("--speech-model") + 1] = str(tmp_path / "nope")
    refused(argv, "--speech-model: no such model folder")
    argv = _argv(participant, out)
    argv[argv.index("--decoder-config") + 1] = '{"resnet3d": {}}'
    refused(argv, "--decoder-config names architectures not in --archs: ['resnet3d']")
    argv = _argv(participant, out)
    argv[argv.index("--train-config") + 1] = '{"seed": 3, "lr": 0.01}'
    refused(argv, "--train-config: ['seed'] cannot be set here; allowed:", "weight_decay")
    argv[argv.index("--train-config") + 1] = '{"weight_pcc": -1}'
    refused(argv, "--train-config: weight_pcc must be a finite number >= 0")
    argv[argv.index("--train-config") + 1] = '[1]'
    refused(argv, "--train-config must be a JSON object")
    refused(["sweep", "--archs", "edge", "--out", str(out)], "--participants is required")
    refused(["sweep", "--report-only", "--out", str(out)], "holds no sweep_config.json")
    full = tmp_path / "full"
    full.mkdir()
    (full / "thesis.txt").write_text("keep me")
    refused(_argv(participant, full), "holds files but no sweep_config.json")
    assert not (out / "tasks").exists() and (full / "thesis.txt").read_text() == "keep me"
    with pytest.raises(SystemExit):
        main(_argv(participant, out, "--causal", "sometimes"))
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(_argv(participant, out, "--cpus-per-task", "0"))
    assert "--cpus-per-task: must be a whole number >= 1" in capsys.readouterr().err


def test_recipe_fills_in_what_the_train_and_decoder_configs_leave_unset(participant, tmp_path):
    from edgensd.cli.main import build_parser
    from edgensd.cli.sweep import build_config
    from edgensd.decoding.recipes import recipe_train

    recipe = recipe_train("small-data")
    argv = _argv(participant, tmp_path / "out", "--recipe", "small-data")
    argv[argv.index("--train-config") + 1] = '{"aug_noise": 0.1}'
    cfg = build_config(build_parser().parse_args(argv))
    assert cfg.train == {"weight_decay": 0.05, "aug_dropout": 0.1, "aug_noise": 0.1, "aug_gain": 0.2,
                         "spec_loss": "rmse", "weight_pcc": 1.0}
    assert cfg.decoder == {"edge": {"dropout": 0.3, **OVERRIDES["edge"]}, "lstm": {"dropout": 0.3, **OVERRIDES["lstm"]}}
    argv[argv.index("--decoder-config") + 1] = json.dumps({"edge": {**OVERRIDES["edge"], "dropout": 0.05}})
    cfg = build_config(build_parser().parse_args(argv))
    assert cfg.decoder["edge"]["dropout"] == 0.05 and cfg.decoder["lstm"] == {"dropout": 0.3}
    assert cfg.train_arch == {}  # one recipe for all: kept in train, as sweeps before --recipe auto had it
    plain = build_config(build_parser().parse_args(_argv(participant, tmp_path / "out", "--recipe", "none")))
    assert plain.train == TRAIN and plain.decoder == OVERRIDES and plain.train_arch == {}  # older sweeps' form
    auto = build_config(build_parser().parse_args(_argv(participant, tmp_path / "out")))  # the default
    assert auto.train == TRAIN and auto.train_arch == {"edge": {**recipe, **TRAIN}}
    assert auto.decoder == {"edge": {"dropout": 0.3, **OVERRIDES["edge"]}, "lstm": OVERRIDES["lstm"]}
    assert auto.decoder_fingerprint("p", "edge", True)["train"] == {**recipe, **TRAIN}
    assert auto.decoder_fingerprint("p", "lstm", True)["train"] == TRAIN
    argv = _argv(participant, tmp_path / "out")
    argv[argv.index("--archs") + 1] = "edge"
    argv[argv.index("--decoder-config") + 1] = json.dumps({"edge": OVERRIDES["edge"]})
    only_edge = build_config(build_parser().parse_args(argv))  # auto with edge alone = --recipe small-data
    assert only_edge.train == {**recipe, **TRAIN} and only_edge.train_arch == {}
    with pytest.raises(SweepConfigError, match=r"train_arch overrides name architectures that are not swept: "
                                               r"\['swin3d'\]"):
        dataclasses.replace(auto, train_arch={"swin3d": {}})
    with pytest.raises(SweepConfigError, match=r"train overrides may not set \['seed'\]"):
        dataclasses.replace(auto, train_arch={"edge": {"seed": 1}})


def test_more_cpus_per_task_than_ray_has_is_refused(ray_session, participant, tmp_path, edgensd_log):
    assert main(_argv(participant, tmp_path / "out", "--cpus-per-task", "3")) == 2
    assert "--cpus-per-task 3 is more than the 2 CPUs Ray has" in _logged(edgensd_log)


def test_bootstrap_on_known_numbers():
    # two values: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4 → the 95 % interval is [0, 1]
    assert bootstrap_mean_ci([0.0, 1.0]) == {"mean": 0.5, "ci": [0.0, 1.0], "n": 2}
    s = bootstrap_mean_ci([0.7] * 6)
    assert s["mean"] == pytest.approx(0.7) and s["ci"] == pytest.approx([0.7, 0.7])
    assert bootstrap_mean_ci([0.3]) == {"mean": 0.3, "ci": None, "n": 1}
    # many values: the interval approaches mean ± 1.96 sd / sqrt(n) (sd with 1/n, as the bootstrap uses)
    x = np.random.default_rng(1).normal(0.6, 0.05, 400)
    s = bootstrap_mean_ci(x, n_boot=4000, seed=3)
    half = 1.96 * x.std() / np.sqrt(x.size)
    assert s["ci"][0] == pytest.approx(x.mean() - half, abs=0.15 * half)
    assert s["ci"][1] == pytest.approx(x.mean() + half, abs=0.15 * half)
    assert bootstrap_mean_ci(x, seed=3) == bootstrap_mean_ci(x, seed=3)  # seeded
    for bad, match in (([], "at least one"), ([0.1, np.nan], "finite")):
        with pytest.raises(ValueError, match=match):
            bootstrap_mean_ci(bad)
    with pytest.raises(ValueError, match="n_boot must be an integer >= 100"):
        bootstrap_mean_ci([0.1, 0.2], n_boot=10)


def test_groups_pair_each_participant_with_its_ridge():
    rows = [{"participant": f"p{i}", "arch": "edge", "causal": True, "layout": lay, "pcc_mean": pcc,
             "ridge_pcc_mean": ridge, "floor_pcc_mean": 0.5, "ceiling_pcc_mean": 0.9, "diff_vs_ridge": pcc - ridge}
            for i, (lay, pcc, ridge) in enumerate([("LD", 0.70, 0.60), ("HB", 0.80, 0.75), ("LD", 0.62, 0.64)])]
    (g,) = summarize_groups(rows, n_boot=1000)
    assert g["n_participants"] == 3 and g["pcc"]["mean"] == pytest.approx(0.70667, abs=1e-5)
    assert g["diff_vs_ridge"]["mean"] == pytest.approx((0.10 + 0.05 - 0.02) / 3)
    lo, hi = g["diff_vs_ridge"]["ci"]
    assert -0.02 - 1e-9 <= lo <= hi <= 0.10 + 1e-9
    assert g["frac_above_ridge"] == pytest.approx(2 / 3)
    assert g["by_layout"]["LD"]["n"] == 2 and g["by_layout"]["HB"]["pcc_mean"] == pytest.approx(0.80)


def test_causal_models_are_paired_with_the_best_noncausal_one():
    def row(p, arch, causal, pcc):
        return {"participant": p, "arch": arch, "causal": causal, "layout": "LD", "pcc_mean": pcc,
                "ridge_pcc_mean": 0.6, "floor_pcc_mean": 0.5, "ceiling_pcc_mean": 0.9, "diff_vs_ridge": pcc - 0.6,
                "train_steps": 10, "seconds": 60.0}

    rows = [row("p0", "edge", True, 0.70), row("p1", "edge", True, 0.66), row("p2", "edge", True, 0.64),
            row("p0", "lstm", False, 0.72), row("p1", "lstm", False, 0.69),  # best non-causal (mean 0.705)
            row("p0", "resnet3d", False, 0.71), row("p1", "resnet3d", False, 0.65), row("p2", "resnet3d", False, 0.66),
            row("p0", "lstm", True, 0.68)]
    groups = summarize_groups(rows, n_boot=1000)
    cmp = {c["arch"]: c for c in compare_to_best_noncausal(rows, groups, n_boot=1000)}
    assert set(cmp) == {"edge", "lstm"} and cmp["edge"]["reference"] == "lstm"
    assert cmp["edge"]["reference_pcc_mean"] == pytest.approx(0.705)
    # paired on p0 and p1 only (p2 has no non-causal lstm): (0.70 - 0.72 + 0.66 - 0.69) / 2
    assert cmp["edge"]["diff"]["n"] == 2 and cmp["edge"]["diff"]["mean"] == pytest.approx(-0.025)
    assert cmp["lstm"]["diff"] == {"mean": pytest.approx(-0.04), "ci": None, "n": 1}
    assert compare_to_best_noncausal([r for r in rows if r["causal"]], summarize_groups(
        [r for r in rows if r["causal"]], n_boot=1000)) == []
    md = markdown({"n_boot": 1000, "participants": ["p0", "p1", "p2"], "archs": ["edge", "lstm", "resnet3d"],
                   "causal": "both", "n_finished": len(rows), "n_expected": len(rows), "minutes": 30, "rows": rows,
                   "groups": groups, "vs_best_noncausal": list(cmp.values()), "missing": [], "plots": []})
    assert "## Causal against the best non-causal model" in md and "| edge | lstm | 0.705 | 2 | -0.025 |" in md
    # the non-causal ridge of each participant's evaluation is a candidate too: here the best (mean 0.71)
    for r in rows:
        r["ridge_noncausal_pcc_mean"] = {"p0": 0.73, "p1": 0.70, "p2": 0.70}[r["participant"]]
    cmp = {c["arch"]: c for c in compare_to_best_noncausal(rows, groups, n_boot=1000)}
    assert cmp["edge"]["reference"] == "ridge" and cmp["edge"]["reference_pcc_mean"] == pytest.approx(0.71)
    assert cmp["edge"]["diff"]["n"] == 3 and cmp["edge"]["diff"]["mean"] == pytest.approx((-0.03 - 0.04 - 0.06) / 3)
    only_causal = [r for r in rows if r["causal"]]
    assert [c["reference"] for c in compare_to_best_noncausal(only_causal, summarize_groups(only_causal, n_boot=1000),
                                                              n_boot=1000)] == ["ridge", "ridge"]


def test_old_done_json_with_an_unreadable_evaluation_leaves_ridge_out(tmp_path, edgensd_log):
    """A done.json from before the non-causal ridge key, whose eval.json is gone, malformed or lacks the key:
    the row is kept, a warning names the file, and that participant has no non-causal ridge candidate."""
    cfg = SweepConfig(participants=[f"/d/{n}.h5" for n in ("p0", "p1", "p2", "p3")], archs=["edge"],
                      causal="causal")
    evals = {"p0": None, "p1": "{not json", "p2": json.dumps({"baselines": {"ridge_pcc_mean": 0.6}}),
             "p3": json.dumps({"baselines": {"ridge_noncausal_pcc_mean": 0.64}})}
    for name, text in evals.items():
        task = decoder_task_dir(tmp_path, name, "edge", True)
        task.mkdir(parents=True)
        if text is not None:
            (task / "eval.json").write_text(text)
        (task / "done.json").write_text(json.dumps(
            {"participant": name, "arch": "edge", "causal": True, "layout": "LD", "pcc_mean": 0.65,
             "ridge_pcc_mean": 0.6, "floor_pcc_mean": 0.5, "ceiling_pcc_mean": 0.9, "train_steps": 10,
             "seconds": 60.0, "eval_json": str(task / "eval.json")}))
    rows, missing = collect_rows(tmp_path, cfg)
    assert missing == [] and [r["participant"] for r in rows] == ["p0", "p1", "p2", "p3"]
    assert ["ridge_noncausal_pcc_mean" in r for r in rows] == [False, False, False, True]
    warned = [r.getMessage() for r in edgensd_log if r.levelname == "WARNING"]
    assert len(warned) == 3 and all("ridge is left out of the non-causal references" in w for w in warned)
    for name, w in zip(("p0", "p1", "p2"), warned, strict=True):
        assert w.startswith(str(decoder_task_dir(tmp_path, name, "edge", True) / "eval.json"))
    assert "ridge_noncausal_pcc_mean" in warned[2]  # the missing key is named
    # ridge stays a candidate, over the one participant that has it
    (c,) = compare_to_best_noncausal(rows, summarize_groups(rows, n_boot=1000), n_boot=1000)
    assert c["reference"] == "ridge" and c["reference_pcc_mean"] == pytest.approx(0.64)
    assert c["diff"] == {"mean": pytest.approx(0.65 - 0.64), "ci": None, "n": 1}


def test_participant_layout_from_the_file(participant, tmp_path):
    assert participant_layout(participant) == "LD"
    cases = {"hb.h5": ({"density": "hybrid"}, {}), "strip.h5": ({}, {"layout": "strip"}),
             "sim.h5": ({}, {"simulation_config": json.dumps({"layout": "hb128"})}), "none.h5": ({}, {})}
    for name, (dsets, attrs) in cases.items():
        with h5py.File(tmp_path / name, "w") as f:
            for k, v in dsets.items():
                f.create_dataset(k, data=v, dtype=h5py.string_dtype())
            f.attrs.update(attrs)
    assert [participant_layout(tmp_path / n) for n in cases] == ["HB", "strip", "HB", "unknown"]
    assert participant_layout(tmp_path / "absent.h5") == "unknown"


def test_sweep_config_round_trip_and_resume_rules(tmp_path):
    cfg = SweepConfig(participants=["/d/p0.h5", "/d/p1.h5"], participant_sha256={"p0": "a" * 64, "p1": "b" * 64},
                      archs=["edge", "lstm"], minutes=5.0, decoder={"lstm": {"hidden_size": 16}})
    assert SweepConfig.load(cfg.save(tmp_path / "c.json")) == cfg
    more = SweepConfig(participants=["/d/p0.h5", "/e/p2.h5"], participant_sha256={"p0": "a" * 64, "p2": "c" * 64},
                       archs=["lstm", "resnet3d"], minutes=5.0, decoder={"lstm": {"hidden_size": 16}},
                       cpus_per_task=2)
    check_resume(cfg, more, tmp_path)  # participants and architectures may be added or left out
    with pytest.raises(SweepConfigError, match=r"decoder\['lstm'\]"):
        check_resume(cfg, SweepConfig(**{**more.to_dict(), "decoder": {"lstm": {"hidden_size": 32}}}), tmp_path)
    with pytest.raises(SweepConfigError, match=r"train\['edge'\]: \{\} → \{'weight_decay': 0.01\}"):
        check_resume(cfg, SweepConfig(**{**cfg.to_dict(), "train": {"weight_decay": 0.01}}), tmp_path)
    with pytest.raises(SweepConfigError, match=r"train overrides may not set \['max_minutes'\]"):
        SweepConfig(train={"max_minutes": 3})
    with pytest.raises(SweepConfigError, match="seed: 0 → 1; batch_size: 16 → 8"):
        check_resume(cfg, SweepConfig(**{**cfg.to_dict(), "seed": 1, "batch_size": 8}), tmp_path)
    with pytest.raises(SweepConfigError, match=r"causal must be one of \['causal', 'noncausal', 'both'\]"):
        SweepConfig(causal="sometimes")
    with pytest.raises(SweepConfigError, match="distinct names"):
        SweepConfig(participants=["/a/p.h5", "/b/p.h5"])


@pytest.fixture(scope="module")
def twin(participant):
    """A second participant simulated from the same speech file as ``participant`` (another seed: other
    electrodes and noise, the same recording)."""
    from edgensd.neural.simulate import SimulationConfig, simulate, write_simulation

    d = participant.parent
    res = simulate(SimulationConfig(speech=str(d / "speech.h5"), layout="ld8x8", seed=4, trial_gap_s=0.8),
                   verbose="warning")
    write_simulation(res, d / "q.h5")
    return d / "q.h5"


def test_speech_key_names_the_recording_not_the_neural_data(participant, twin, tmp_path):
    from edgensd.data.participant import load_participant, save_participant, speech_key
    from edgensd.decoding.targets import data_key
    from edgensd.params import VoiceRange

    p, q = load_participant(participant), load_participant(twin)
    assert not np.array_equal(p.ecog, q.ecog) and data_key(p) != data_key(q)
    assert speech_key(p) == speech_key(q)  # same audio, trials, split and voice range
    for change in ("audio", "test_trials", "voice_range", "end"):
        r = load_participant(participant)
        if change == "audio":
            r.audio = r.audio.copy()
            r.audio[1000] += 1e-3
        elif change == "test_trials":
            r.test_trials = r.test_trials[:-1]
        elif change == "voice_range":
            r.voice_range = VoiceRange.preset("low" if r.voice_range is None or r.voice_range.name == "high"
                                              else "high")
        else:
            r.end = r.end.copy()
            r.end[0] -= 1
        assert speech_key(r) != speech_key(p), change
    save_participant(p, tmp_path / "again.h5")
    assert speech_key(load_participant(tmp_path / "again.h5")) == speech_key(p)  # survives a round trip


def test_participants_of_one_recording_share_one_speech_model(ray_session, participant, twin, tmp_path, edgensd_log):
    out = tmp_path / "out"
    argv = ["sweep", "--participants", str(participant), str(twin), "--archs", "edge", "--causal", "causal",
            "--out", str(out), "--speech-minutes", "0.01", "--minutes", "0.03", "--batch-size", "4", "--no-stoi",
            "--cpus", "1", "--decoder-config", json.dumps({"edge": OVERRIDES["edge"]})]
    assert main(argv) == 0
    log = " ".join(r.getMessage() for r in edgensd_log)
    assert "2 to run (+2 stage 1; 1 speech model for 2 participants, 1 to train)" in log
    (model_task,) = (out / "speech").iterdir()
    assert _attempts(model_task) == 1
    model = json.loads((model_task / "done.json").read_text())
    assert f"speech/{model_task.name} done: speech model trained" in log and "for p, q" in log
    for name in ("p", "q"):
        stage1 = json.loads((out / f"tasks/{name}/speech/done.json").read_text())
        assert stage1["speech_model"] == model["speech_model"] == str(model_task / "model")
        assert stage1["speech_key"] == model_task.name and stage1["fingerprint"]["speech_key"] == model_task.name
        assert stage1["speech_train_steps"] == model["speech_train_steps"] >= 1
        dec = json.loads((out / f"tasks/{name}/edge_causal/done.json").read_text())
        assert dec["speech_model"] == model["speech_model"]
    cfg = json.loads((out / "sweep_config.json").read_text())
    assert cfg["speech_per"] == "speech" and cfg["speech_keys"] == {"p": model_task.name, "q": model_task.name}
    # one per participant instead: a changed setting on this --out is refused, naming the option
    edgensd_log.clear()
    assert main([*argv, "--speech-per", "participant"]) == 2
    assert "speech_per: 'speech' → 'participant'" in _logged(edgensd_log)
    # a sweep saved before the option trained one speech model per participant: resuming it says so
    old = {k: v for k, v in cfg.items() if k not in ("speech_per", "speech_keys")}
    (out / "sweep_config.json").write_text(json.dumps(old))
    assert main(argv) == 2
    assert "speech_per: 'participant' → 'speech' (--speech-per participant resumes it)" in _logged(edgensd_log)


def test_shared_speech_model_of_another_voice_is_refused(participant, tmp_path, edgensd_log):
    from edgensd.params import VoiceRange

    low = tmp_path / "q.h5"
    shutil.copy(participant, low)
    with h5py.File(low, "a") as f:
        del f["voice_range"]
        f.create_dataset("voice_range", data=json.dumps(VoiceRange.preset("low").to_dict()),
                         dtype=h5py.string_dtype())
    assert main(_argv(low, tmp_path / "out", shared=True)) == 2
    msg = _logged(edgensd_log)
    assert "--speech-model: its voice range 'high'" in msg and "q.h5 ('low'" in msg


def test_a_cluster_address_is_joined_not_started(monkeypatch):
    """--ray-address: ray.init gets the address and none of the local instance's settings."""
    import ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 64.0})
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    s = runner.start_ray(num_cpus=2, address="10.0.0.5:6379")
    assert calls[0]["address"] == "10.0.0.5:6379" and "num_cpus" not in calls[0] and "_temp_dir" not in calls[0]
    assert s.total_cpus() == 64.0 and s.temp_dir is None
    s.stop()
    assert calls[-1] == "shutdown"
