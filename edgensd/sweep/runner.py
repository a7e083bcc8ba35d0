"""Run a sweep: start (or join) Ray, submit the tasks that are not done, log one line per finished task, report.

Stage-1 tasks (one per participant) run first; each stage-2 task takes its participant's stage-1 result as an
argument (a Ray object reference), so Ray starts it only once that participant's speech model and cache
exist. Without a shared ``--speech-model``, participants who spoke the same recording (equal
:func:`~edgensd.data.participant.speech_key`, e.g. simulated from one speech file) share one speech-model task,
whose result their stage-1 tasks take the same way. Finished tasks (``done.json`` in their folder) are not
submitted again. Ctrl-C or SIGTERM cancels the running tasks, which write their training checkpoint before
they stop; running the same command again resumes them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
import warnings
from pathlib import Path

from edgensd.log import logger
from edgensd.sweep.config import (
    CONFIG_FILE,
    SweepConfig,
    SweepConfigError,
    cache_dir,
    causal_tag,
    check_resume,
    decoder_task_dir,
    participant_layout,
    read_done,
    same_fingerprint,
    speech_model_task_dir,
    speech_task_dir,
)

__all__ = ["OBJECT_STORE_BYTES", "RaySession", "plan_sweep", "prepare_sweep", "run_sweep", "start_ray"]

OBJECT_STORE_BYTES = 100 * 1024 * 1024
"""Object store of a local Ray instance: tasks exchange small dicts only (Ray's minimum is 75 MiB)."""

CANCEL_GRACE_S = 60.0
"""After Ctrl-C / SIGTERM: how long running tasks get to write their checkpoint before Ray is stopped."""

_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_TOKEN = secrets.token_hex(32)
"""This process's token for the local Ray instances it starts (one per process: Ray caches the token it read)."""
_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


class RaySession:
    """A connection to Ray made by :func:`start_ray`; :meth:`stop` undoes what starting it changed.

    Attributes
    ----------
    address : str
        ``'local'`` or the cluster address.
    owned : bool
        Whether this session started Ray (and stops it), rather than reusing one already initialized in this
        process.
    temp_dir : Path or None
        The local instance's session and log folder (removed by :meth:`stop`).
    start_seconds : float
        Wall time of ``ray.init``.
    """

    def __init__(self, address: str, owned: bool, temp_dir: Path | None, start_seconds: float, env: dict,
                 sigterm) -> None:
        self.address, self.owned, self.temp_dir, self.start_seconds = address, owned, temp_dir, start_seconds
        self._env, self._sigterm = env, sigterm

    def total_cpus(self) -> float:
        """CPUs Ray can schedule on (all nodes)."""
        import ray

        return float(ray.cluster_resources().get("CPU", 0.0))

    def stop(self) -> None:
        """Shut Ray down if this session started it; restore the environment and the SIGTERM handler."""
        if not self.owned:
            return
        import ray

        ray.shutdown()
        for k, v in self._env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if self._sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._sigterm)
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.owned = False


def start_ray(num_cpus: int = 0, address: str = "") -> RaySession:
    """Start Ray on this machine, or join a cluster; reuse Ray when this process has already initialized it.

    A local instance gets an explicit CPU count, no dashboard, a small object store
    (:data:`OBJECT_STORE_BYTES`), its session and logs in a fresh temporary folder, Ray's own logging at
    WARNING, workers' output kept out of this process's, usage statistics off and token authentication
    with a random token held in the environment (nothing written to the home folder; the variables are
    restored by :meth:`RaySession.stop`).

    Parameters
    ----------
    num_cpus : int
        CPUs of a local instance (0: all CPUs this process may use).
    address : str
        A Ray cluster's address (``host:port``, or ``ray://host:port`` with ``ray[client]``); ``""`` starts Ray
        locally.

    Returns
    -------
    RaySession
    """
    import ray

    if ray.is_initialized():
        logger.debug("using the Ray instance already initialized in this process")
        return RaySession("existing", False, None, 0.0, {}, None)
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    env = {k: os.environ.get(k) for k in ("RAY_USAGE_STATS_ENABLED", *_AUTH_VARS)}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t0 = time.time()
    temp_dir = None
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            quiet = None
            if not any(os.environ.get(k) for k in _AUTH_VARS):
                # Ray turns token authentication on for a new local instance; with the token in the
                # environment it writes no token file, and its notice that it did so is kept quiet.
                os.environ["RAY_AUTH_TOKEN"] = _TOKEN
                quiet = logging.getLogger(_AUTH_LOGGER)
            n = int(num_cpus) or len(os.sched_getaffinity(0))
            # Ray's sockets live in its temp folder, and a socket path must stay under ~100 bytes: use /tmp.
            temp_dir = Path(tempfile.mkdtemp(prefix="edgensd-ray-"))
            old_level = quiet.level if quiet is not None else None
            if quiet is not None:
                quiet.setLevel(logging.ERROR)
            try:
                with warnings.catch_warnings():
                    # Ray starts its processes with a preexec_fn (so they die with this one), which runs the
                    # fork hooks; JAX (loaded by the export tools) warns in its hook on every fork once it has
                    # threads. The children exec at once, so the warning does not apply.
                    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
                    ray.init(address="local", num_cpus=n, include_dashboard=False,
                             object_store_memory=OBJECT_STORE_BYTES, _temp_dir=str(temp_dir), log_to_driver=False,
                             logging_level=logging.WARNING)
            finally:
                if quiet is not None:
                    quiet.setLevel(old_level)
    except BaseException:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    dt = time.time() - t0
    if address:
        logger.info("joined the Ray cluster at %s (%g CPUs) in %.1f s", address, ray.cluster_resources().get("CPU", 0),
                    dt)
    else:
        logger.info("Ray started on this machine (%d CPUs) in %.1f s", ray.cluster_resources().get("CPU", 0), dt)
    return RaySession(address or "local", True, temp_dir, dt, env, sigterm)


def _sha256(path: Path) -> str:
    from edgensd.runtime.bundle import sha256_file

    return sha256_file(path)


def prepare_sweep(cfg: SweepConfig, out: str | os.PathLike) -> SweepConfig:
    """Hash the inputs, check them against what ``out`` already holds and save ``sweep_config.json``.

    Returns
    -------
    SweepConfig
        ``cfg`` with ``participant_sha256`` and ``speech_model_sha256`` filled.

    Raises
    ------
    SweepConfigError
        ``out`` holds files but no sweep, or a sweep whose settings make its finished tasks stale
        (:func:`~edgensd.sweep.config.check_resume`).
    """
    out = Path(out)
    t0 = time.time()
    cfg.participant_sha256 = {n: _sha256(Path(p)) for n, p in zip(cfg.names, cfg.participants, strict=True)}
    cfg.speech_model_sha256 = _sha256(Path(cfg.speech_model) / "model.pt") if cfg.speech_model else ""
    cfg_path = out / CONFIG_FILE
    old = None
    if cfg_path.is_file():
        old = SweepConfig.load(cfg_path)
        if "speech_per" not in json.loads(cfg_path.read_text()):
            old.speech_per = "participant"  # written before the option: one speech model per participant
    cfg.speech_keys = {}
    if cfg.shares_speech:
        from edgensd.data.participant import load_participant, speech_key

        for n, p in zip(cfg.names, cfg.participants, strict=True):
            same_file = old is not None and old.participant_sha256.get(n) == cfg.participant_sha256[n]
            # a file whose content is unchanged keeps its key: a resume does not load every participant again
            known = old.speech_keys.get(n) if same_file else None
            cfg.speech_keys[n] = known or speech_key(load_participant(p))
    logger.debug("hashed %d participant files in %.1f s", len(cfg.participants), time.time() - t0)
    if old is not None:
        check_resume(old, cfg, out)
        logger.info("resuming the sweep in %s", out)
    elif out.is_dir() and any(out.iterdir()):
        raise SweepConfigError(f"--out {out} holds files but no {CONFIG_FILE}: it is not a sweep's folder; "
                               "pass a new or empty folder")
    cfg.save(cfg_path)
    return cfg


def plan_sweep(cfg: SweepConfig, out: str | os.PathLike) -> dict:
    """Split the sweep's tasks into finished and to-do (nothing is run).

    Returns
    -------
    dict
        ``speech`` (per participant: ``spec`` and ``done``: the done.json or None), ``speech_models`` (per
        speech key, when recordings share speech models: ``spec``, ``done`` and ``participants``), ``decoders``
        (list of ``spec`` + ``done``) and ``skipped`` (``(arch, 'noncausal')`` pairs that an architecture
        cannot be).

    Raises
    ------
    SweepConfigError
        A finished task's fingerprint differs from what this sweep would run.
    """
    from edgensd.decoders import get_decoder_class

    out = Path(out)
    speech, models, decoders, skipped = {}, {}, [], []
    for name, path in zip(cfg.names, cfg.participants, strict=True):
        layout = participant_layout(path)
        common = {"participant": name, "data": str(path), "layout": layout, "threads": cfg.cpus_per_task,
                  "cache_dir": str(cache_dir(out, name)), "seed": cfg.seed}
        sdir = speech_task_dir(out, name)
        spec = {**common, "task": f"{name}/speech", "task_dir": str(sdir), "fingerprint": cfg.speech_fingerprint(name),
                "speech_model": cfg.speech_model, "speech_minutes": cfg.speech_minutes, "speech_key": ""}
        if cfg.shares_speech:
            key = cfg.speech_keys[name]
            spec["speech_key"] = key
            if key not in models:  # trained on the first participant's file that has this recording
                mdir = speech_model_task_dir(out, key)
                mfp = cfg.speech_model_fingerprint(key)
                mspec = {"participant": name, "data": str(path), "layout": layout, "threads": cfg.cpus_per_task,
                         "seed": cfg.seed, "task": f"speech/{key}", "task_dir": str(mdir), "fingerprint": mfp,
                         "speech_minutes": cfg.speech_minutes}
                models[key] = {"spec": mspec, "done": _checked_done(mdir, mfp), "participants": []}
            models[key]["participants"].append(name)
        speech[name] = {"spec": spec, "done": _checked_done(sdir, spec["fingerprint"])}
        for arch in cfg.archs:
            for causal in cfg.causalities():
                if not causal and get_decoder_class(arch).causal_only:
                    if (arch, "noncausal") not in skipped:
                        skipped.append((arch, "noncausal"))
                    continue
                ddir = decoder_task_dir(out, name, arch, causal)
                fp = cfg.decoder_fingerprint(name, arch, causal)
                dspec = {**common, "task": f"{name}/{arch}_{causal_tag(causal)}", "task_dir": str(ddir),
                         "fingerprint": fp, "arch": arch, "causal": causal, "minutes": cfg.minutes,
                         "batch_size": cfg.batch_size, "decoder": cfg.decoder.get(arch, {}), "stoi": cfg.stoi,
                         "train": cfg.train_for(arch)}
                decoders.append({"spec": dspec, "done": _checked_done(ddir, fp)})
    return {"speech": speech, "speech_models": models, "decoders": decoders, "skipped": skipped}


def _checked_done(task_dir: Path, fingerprint: dict) -> dict | None:
    done = read_done(task_dir)
    if done is not None and not same_fingerprint(done.get("fingerprint", {}), fingerprint):
        raise SweepConfigError(
            f"{task_dir} finished with other settings ({done.get('fingerprint')}) than this sweep asks for "
            f"({fingerprint}); use the same settings, another --out, or delete that folder to run it again"
        )
    return done


def progress_line(res: dict, n_done: int, n_total: int) -> str:
    """One line for a finished stage-2 task: participant, arch, causality, PCC, ridge PCC, time."""
    diff = res["pcc_mean"] - res["ridge_pcc_mean"]
    return (f"[{n_done}/{n_total}] {res['participant']} {res['arch']} {causal_tag(res['causal'])}: "
            f"PCC {res['pcc_mean']:.3f}, ridge {res['ridge_pcc_mean']:.3f} ({diff:+.3f}), "
            f"{res['seconds'] / 60:.1f} min ({res['train_steps']} steps)")


class _Interrupted(KeyboardInterrupt):
    pass


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM into KeyboardInterrupt for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise _Interrupted

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_sweep(cfg: SweepConfig, out: str | os.PathLike) -> dict:
    """Run (or resume) a sweep and write its report.

    Parameters
    ----------
    cfg : SweepConfig
        Participants, architectures, causality, budgets, Ray settings.
    out : path
        Output folder (created; resumed when it holds this sweep).

    Returns
    -------
    dict
        ``report`` (:func:`edgensd.sweep.report.write_report`), ``submitted`` (tasks run this time),
        ``failed`` (list of ``{"task", "error"}``), ``ray_start_seconds`` and ``seconds``.

    Raises
    ------
    SweepConfigError
        Settings that contradict ``out`` (see :func:`prepare_sweep`, :func:`plan_sweep`), a CPU share larger
        than Ray has.
    KeyboardInterrupt
        After Ctrl-C / SIGTERM, once the running tasks were cancelled (their checkpoints written).
    """
    import ray

    from edgensd.sweep.report import write_report
    from edgensd.sweep.tasks import run_decoder_task, run_speech_model_task, run_speech_task

    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = prepare_sweep(cfg, out)
    plan = plan_sweep(cfg, out)
    for arch, _ in plan["skipped"]:
        logger.info("%s exists only as a causal model: no non-causal %s task", arch, arch)
    todo_dec = [d for d in plan["decoders"] if d["done"] is None]
    todo_speech = {n: s for n, s in plan["speech"].items() if s["done"] is None and any(
        d["spec"]["participant"] == n for d in todo_dec)}
    todo_models = {k: m for k, m in plan["speech_models"].items() if m["done"] is None and any(
        s["spec"]["speech_key"] == k for s in todo_speech.values())}
    n_total, n_done = len(plan["decoders"]), len(plan["decoders"]) - len(todo_dec)
    shared = ""
    if plan["speech_models"]:
        n_models = len(plan["speech_models"])
        shared = (f"; {n_models} speech model{'s' if n_models != 1 else ''} for {len(cfg.participants)} "
                  f"participant{'s' if len(cfg.participants) != 1 else ''}, {len(todo_models)} to train")
    logger.info("sweep: %d participants × %d decoders: %d tasks, %d finished, %d to run (+%d stage 1%s)",
                len(cfg.participants), n_total // max(len(cfg.participants), 1), n_total, n_done, len(todo_dec),
                len(todo_speech), shared)
    failed, submitted, ray_start = [], 0, 0.0
    if todo_dec:
        session = start_ray(cfg.num_cpus, cfg.ray_address)
        ray_start = session.start_seconds
        try:
            have = session.total_cpus()
            if cfg.cpus_per_task > have:
                raise SweepConfigError(f"--cpus-per-task {cfg.cpus_per_task} is more than the {have:g} CPUs Ray "
                                       "has: no task could ever start")
            speech_fn = ray.remote(run_speech_task)
            model_fn = ray.remote(run_speech_model_task)
            dec_fn = ray.remote(run_decoder_task)
            pending: dict = {}
            stage1a = {}
            for key, m in plan["speech_models"].items():
                if key in todo_models:
                    ref = model_fn.options(num_cpus=cfg.cpus_per_task, name=m["spec"]["task"]).remote(m["spec"])
                    pending[ref] = m["spec"]
                    stage1a[key] = ref
                else:
                    stage1a[key] = m["done"]
            stage1 = {}
            for name, s in plan["speech"].items():
                if name in todo_speech:
                    ref = speech_fn.options(num_cpus=cfg.cpus_per_task, name=s["spec"]["task"]).remote(
                        s["spec"], stage1a.get(s["spec"]["speech_key"]))
                    pending[ref] = s["spec"]
                    stage1[name] = ref
                else:
                    stage1[name] = s["done"]
            for d in todo_dec:
                spec = d["spec"]
                ref = dec_fn.options(num_cpus=cfg.cpus_per_task, name=spec["task"]).remote(
                    spec, stage1[spec["participant"]])
                pending[ref] = spec
            submitted = len(pending)
            with _sigterm_as_interrupt():
                try:
                    while pending:
                        ready, _ = ray.wait(list(pending), num_returns=1)
                        spec = pending.pop(ready[0])
                        try:
                            res = ray.get(ready[0])
                        except Exception as exc:  # a task's error: report it, keep the others running
                            msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                            failed.append({"task": spec["task"], "error": msg})
                            logger.error("%s failed: %s (log: %s)", spec["task"], msg,
                                         Path(spec["task_dir"]) / "task.log")
                            continue
                        if "arch" in spec:
                            n_done += 1
                            logger.info(progress_line(res, n_done, n_total))
                        elif "cache_dir" not in spec:  # a recording's speech model
                            logger.info("%s done: speech model trained %.1f min (%d steps) for %s",
                                        spec["task"], res["speech_train_seconds"] / 60, res["speech_train_steps"],
                                        ", ".join(plan["speech_models"][res["speech_key"]]["participants"]))
                        else:
                            how = ("shared speech model" if res["shared_speech_model"] else
                                   f"speech model {res['speech_key']}" if res.get("speech_key") else
                                   f"speech model trained {res['speech_train_seconds'] / 60:.1f} min")
                            logger.info("%s stage 1 done: %s, cache ready (%.1f min)", res["participant"], how,
                                        res["seconds"] / 60)
                except KeyboardInterrupt:
                    logger.warning("interrupted: cancelling %d unfinished tasks (running ones write their "
                                   "checkpoint); run the same command again to resume", len(pending))
                    for ref in pending:
                        with contextlib.suppress(Exception):
                            ray.cancel(ref)
                    with contextlib.suppress(Exception):
                        ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_GRACE_S)
                    raise
        finally:
            session.stop()
    else:
        logger.info("every task is finished: nothing to run")
    report = write_report(out, cfg)
    seconds = time.time() - t0
    logger.info("sweep %s in %.1f min: %d tasks run, %d failed; results in %s", "finished" if not failed else
                "ended", seconds / 60, submitted, len(failed), out / "results.md")
    return {"report": report, "submitted": submitted, "failed": failed, "ray_start_seconds": ray_start,
            "seconds": seconds}
