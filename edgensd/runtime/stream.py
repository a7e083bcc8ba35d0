"""The live path: serial reader → high-gamma features (raw mode) or received frames → decoder step → C
synthesizer → audio frames, one 8 ms frame at a time, with per-stage latency and stream health.

The reader (:class:`edgensd.firmware_bridge.reader.SerialReader`) reads on its own thread and queues
time-stamped blocks; this loop never blocks it. In raw mode the loop computes causal (streaming) high-gamma
features with the statistics the bundle was exported with (:class:`edgensd.neural.highgamma.
StreamingHighGamma`); a bundle whose decoder was trained on other features is refused, because a decoder fed
features it was not trained on decodes badly without any error (``allow_feature_mismatch`` overrides, to
measure exactly that). Gaps the reader fills (its gap policy) run through the decoder like data, so the
audio clock never stops, and are counted as gap frames.

Latency stages, each per output frame, in ms: ``queue`` (packet arrival at the host → the loop takes it),
``features`` (raw mode), ``decoder``, ``synth``, and ``end_to_end`` (arrival of the packet that completed
the frame → its 128 audio samples are ready).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from edgensd.config import Config, check_choice
from edgensd.log import logger
from edgensd.params import raw_to_physical

__all__ = ["FeatureMismatch", "StreamConfig", "run_stream"]

STAGES = ("queue", "features", "decoder", "synth", "end_to_end")


class FeatureMismatch(ValueError):
    """The bundle's decoder expects other features than the stream provides."""


@dataclasses.dataclass
class StreamConfig(Config):
    """Settings of :func:`run_stream`.

    Parameters
    ----------
    backend : {'onnx', 'tflite', 'tflm'}
        Runtime of the decoder step.
    precision : {'int8', 'fp32'}
        Which of the bundle's graphs to run.
    duration_s : float or None
        Stop after this many seconds of device time have been decoded (None: until the stream goes idle).
    idle_exit_s : float or None
        Stop when no data arrived for this long (s) after data began (None: never; then stop with Ctrl-C or
        ``duration_s``). A stall shorter than this is ridden out: the reader reconnects on its own.
    connect_timeout_s : float
        Give up when no device answers within this many seconds of the start.
    stall_timeout_s : float
        Reader watchdog: no byte for this long (s) counts a stall and reconnects.
    gap_policy : {'hold', 'zeros', 'none'}
        How the reader fills missing samples (``hold`` repeats the last values, which keeps the causal
        filters' transients small in raw mode; ``none`` leaves the hole, counted as unfilled); filled frames
        are decoded and counted as gap frames. (The reader's ``nan`` fill is refused: the features and the
        decoder need finite values.)
    fixed_point : bool
        Render audio with the synthesizer's integer path.
    seed : int
        Noise seed of the synthesizer.
    allow_feature_mismatch : bool
        Run a bundle whose decoder was trained on other high-gamma features (offline) on the streaming
        features of raw mode, instead of refusing.
    status_interval_s : float
        Seconds between live status lines on a terminal.
    """

    backend: str = "onnx"
    precision: str = "int8"
    duration_s: float | None = None
    idle_exit_s: float | None = 3.0
    connect_timeout_s: float = 10.0
    stall_timeout_s: float = 1.0
    gap_policy: str = "hold"
    fixed_point: bool = False
    seed: int = 0
    allow_feature_mismatch: bool = False
    status_interval_s: float = 0.5

    def __post_init__(self) -> None:
        check_choice("backend", self.backend, ("onnx", "tflite", "tflm"))
        check_choice("precision", self.precision, ("int8", "fp32"))
        check_choice("gap_policy", self.gap_policy, ("hold", "zeros", "none"))
        for name in ("duration_s", "idle_exit_s"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be > 0 s or None, got {v}")
        for name in ("connect_timeout_s", "stall_timeout_s", "status_interval_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 s, got {getattr(self, name)}")


def _features_for_raw(bundle, info, allow_mismatch: bool):
    """The streaming high-gamma extractor a raw stream needs, built from the bundle's features.json."""
    from edgensd.neural.highgamma import HighGammaStats, StreamingHighGamma

    feats = bundle.features or {}
    stats_d, cfg_d = feats.get("highgamma_stats"), feats.get("highgamma_config")
    if stats_d is None:
        raise FeatureMismatch(
            f"{bundle.path}/features.json holds no high-gamma statistics, so raw samples cannot be turned into "
            "the features the decoder expects; stream high-gamma frames instead (device-sim --mode frames), or "
            "export from a model trained on a file that records them (edgensd simulate or prepare)")
    stats = HighGammaStats.from_dict(stats_d)
    pipeline = (cfg_d or {}).get("pipeline", stats.config.pipeline)
    if pipeline != "streaming":
        msg = (f"the bundle's decoder was trained on '{pipeline}' high-gamma features ({bundle.path}/features.json), "
               "but raw mode computes causal streaming features, which lag and differ from them; train on "
               "streaming features (edgensd simulate --pipeline streaming, or prepare --pipeline streaming) and "
               "export again")
        if not allow_mismatch:
            raise FeatureMismatch(msg + " (or pass --allow-feature-mismatch to measure the mismatch)")
        logger.warning("%s; running anyway (--allow-feature-mismatch)", msg)
    if abs(stats.fs - info.raw_rate_hz) > 1e-6 * stats.fs:
        raise FeatureMismatch(f"the device samples at {info.raw_rate_hz:g} Hz but the bundle's features were "
                              f"computed at {stats.fs:g} Hz ({bundle.path}/features.json)")
    cfg = dataclasses.replace(stats.config, pipeline="streaming")
    return StreamingHighGamma(info.raw_rate_hz, info.n_channels, cfg, stats=stats)


def run_stream(port: str, bundle_path: str | os.PathLike, config: StreamConfig | None = None, *,
               wav: str | os.PathLike | None = None, record: str | os.PathLike | None = None,
               json_path: str | os.PathLike | None = None, status: bool | None = None,
               stop_event=None, on_frame=None, on_connected=None) -> dict:
    """Decode a live device stream into audio.

    Parameters
    ----------
    port : str
        A device path (``/dev/ttyACM0``, a pty), or a pyserial URL (``socket://127.0.0.1:PORT``, ``loop://``).
    bundle_path : path
        A bundle written by ``edgensd export bundle`` (verified on load).
    config : StreamConfig
    wav : path, optional
        16 kHz WAV of the decoded audio, kept valid while it grows.
    record : path, optional
        What was received, as a participant file (see :mod:`edgensd.firmware_bridge.record`).
    json_path : path, optional
        Where the summary is written (also on Ctrl-C or an error after the start).
    status : bool, optional
        Live one-line status on stderr (default: when stderr is a terminal).
    stop_event : threading.Event, optional
        Set it to stop the stream from another thread.
    on_frame : callable, optional
        Called per output frame as ``on_frame(device_time_us, features, raw_params, audio, filled)``: the
        device time of the packet sample that completed the frame (µs), the decoder's input (n_electrodes,),
        its raw output (18,), the 128 audio samples and whether the frame came from a gap fill.
    on_connected : callable, optional
        Called once, without arguments, when the port is open (e.g. to start a simulated device, so that it
        streams from its first sample).

    Returns
    -------
    dict
        The summary: ``frames_out``, ``gap_frames``, the reader's counters (``packets_ok``,
        ``packets_bad_crc``, ``duplicates``, ``resyncs``, ``reconnects``, ...), ``blind_s``, and
        ``latency_ms`` with ``p50``/``p99``/``max`` per stage.
    """
    from edgensd.firmware_bridge.protocol import PacketType
    from edgensd.firmware_bridge.reader import ReaderConfig, SerialReader
    from edgensd.runtime.bundle import load_bundle
    from edgensd.runtime.pipeline import DecodePipeline
    from edgensd.runtime.sinks import LatencyRecorder, StreamingWavWriter

    cfg = config or StreamConfig()
    bundle = load_bundle(bundle_path)
    pipe = DecodePipeline(bundle, cfg.backend, cfg.precision, seed=cfg.seed, fixed_point=cfg.fixed_point)
    status = sys.stderr.isatty() if status is None else status
    latency = LatencyRecorder(STAGES)
    reader = SerialReader(ReaderConfig(url=port, stall_timeout_s=cfg.stall_timeout_s, reconnect_on_stall=True,
                                       gap_policy=cfg.gap_policy))
    writer = StreamingWavWriter(wav) if wav is not None else None
    recorder = None
    state = {"frames_out": 0, "gap_frames": 0, "mode": None, "blind_s": 0.0, "blind_periods": 0,
             "stop_reason": None, "device_info": None, "first_device_time_us": None, "host_skipped_samples": 0,
             "unfilled_gap_samples": 0}
    hg = None
    next_us = None  # device time of the next sample expected in the chosen stream
    overflows_seen = 0
    lookahead = bundle.lookahead_frames
    target = None if cfg.duration_s is None else math.ceil(round(cfg.duration_s * 125, 6))
    n_steps = 0
    t_start = time.monotonic()
    last_data = None
    last_status = 0.0
    blind_since = None
    reader.start()
    try:
        if on_connected is not None:
            if not reader.wait_connected(cfg.connect_timeout_s):
                raise TimeoutError(f"could not open {port} within {cfg.connect_timeout_s:g} s")
            on_connected()
        while True:
            if stop_event is not None and stop_event.is_set():
                state["stop_reason"] = "stopped"
                break
            block = reader.get(timeout=0.02)
            now = time.monotonic()
            if block is None:
                if last_data is None:
                    if now - t_start > cfg.connect_timeout_s:
                        raise TimeoutError(f"no data from {port} within {cfg.connect_timeout_s:g} s (is the device "
                                           "sending? is this the right port?)")
                else:
                    idle = now - last_data
                    if blind_since is None and idle > cfg.stall_timeout_s:
                        blind_since = last_data
                    if cfg.idle_exit_s is not None and idle > cfg.idle_exit_s:
                        state["stop_reason"] = f"no data for {cfg.idle_exit_s:g} s"
                        break
                continue
            t_take = now
            info = reader.device_info
            if state["mode"] is None:
                state["mode"] = "raw" if block.kind == PacketType.RAW else "frames"
                if info.n_channels != bundle.n_electrodes:
                    raise ValueError(f"the device sends {info.n_channels} channels but the bundle's decoder takes "
                                     f"{bundle.n_electrodes} ({bundle.path})")
                state["device_info"] = dataclasses.asdict(info) if dataclasses.is_dataclass(info) else str(info)
                if state["mode"] == "raw":
                    hg = _features_for_raw(bundle, info, cfg.allow_feature_mismatch)
                if record is not None:
                    from edgensd.firmware_bridge.record import SessionRecorder

                    recorder = SessionRecorder(record, info.n_channels, frame_rate_hz=info.frame_rate_hz,
                                               raw_fs=info.raw_rate_hz if state["mode"] == "raw" else None,
                                               origin_us=None, layout=getattr(info, "layout", None) or None)
                logger.info("streaming %s from %s: %d channels, %s mode", bundle.path.name, port, info.n_channels,
                            state["mode"])
            want = PacketType.RAW if state["mode"] == "raw" else PacketType.HIGH_GAMMA
            if block.kind != want:
                continue  # the other stream of a device that sends both
            if blind_since is not None:
                gap = block.host_time_s[0] - blind_since
                state["blind_s"] += float(gap)
                state["blind_periods"] += 1
                logger.warning("stream: no data for %.2f s; resumed", gap)
                blind_since = None
            last_data = now
            if state["first_device_time_us"] is None:
                state["first_device_time_us"] = int(block.device_time_us[0])
            period_us = 1e6 / (info.raw_rate_hz if state["mode"] == "raw" else info.frame_rate_hz)
            if next_us is not None and block.device_time_us[0] > next_us + period_us / 2:
                skipped = int(round((block.device_time_us[0] - next_us) / period_us))
                unit = "raw samples" if state["mode"] == "raw" else "frames"
                if reader.counters.queue_overflows > overflows_seen:
                    # they reached the host but the reader's queue dropped them: decoding fell behind
                    state["host_skipped_samples"] += skipped
                    logger.warning("stream: decoding fell behind; %d %s skipped", skipped, unit)
                else:  # a gap too long to fill (the reader's max_fill_s), e.g. a device that restarted
                    state["unfilled_gap_samples"] += skipped
                    logger.warning("stream: %d %s missing and not filled (gap longer than the fill limit)",
                                   skipped, unit)
            overflows_seen = reader.counters.queue_overflows
            next_us = int(block.device_time_us[-1]) + period_us
            if recorder is not None:
                recorder.add_block(block)
            if state["mode"] == "raw":
                t0 = time.perf_counter()
                frames = hg.process(block.values)
                t_feat = time.perf_counter() - t0
                if recorder is not None and len(frames):
                    # frames count from the first raw sample, the recording's origin
                    recorder.add_frames(hg.n_frames_out - len(frames), frames, not block.filled)
            else:
                frames, t_feat = block.values, None
            arrival = float(block.host_time_s[-1])
            dev_t = int(block.device_time_us[-1])
            for frame in frames:
                t1 = time.perf_counter()
                raw = pipe.backend.step(frame)
                t2 = time.perf_counter()
                n_steps += 1
                if n_steps <= lookahead:
                    continue
                phys = raw_to_physical(raw[None], bundle.voice).astype(np.float32)
                audio = pipe.synth.render_frame(phys[0])
                t3 = time.perf_counter()
                if writer is not None:
                    writer.write(audio)
                done = time.monotonic()
                latency.add("queue", t_take - arrival)
                if t_feat is not None:
                    latency.add("features", t_feat / max(len(frames), 1))
                latency.add("decoder", t2 - t1)
                latency.add("synth", t3 - t2)
                latency.add("end_to_end", done - arrival)
                state["frames_out"] += 1
                state["gap_frames"] += int(block.filled)
                if on_frame is not None:
                    on_frame(dev_t, frame, raw, audio, bool(block.filled))
                if target is not None and state["frames_out"] >= target:
                    break
            if status and now - last_status > cfg.status_interval_s:
                last_status = now
                c = reader.counters
                e2e = latency.summary()["end_to_end"]
                sys.stderr.write(f"\r{state['frames_out'] / 125:7.1f} s decoded  packets {c.packets}  bad CRC "
                                 f"{c.crc_failures + c.header_crc_failures}  gap frames {state['gap_frames']}  "
                                 f"reconnects {c.reconnects}  e2e p99 {e2e['p99'] or 0:.2f} ms ")
                sys.stderr.flush()
            if target is not None and state["frames_out"] >= target:
                state["stop_reason"] = f"decoded {cfg.duration_s:g} s"
                break
    except KeyboardInterrupt:
        state["stop_reason"] = "interrupted"
        logger.warning("stream interrupted; writing what was decoded")
    finally:
        reader.stop()
        if writer is not None:
            writer.close()
        if recorder is not None:
            recorder.close()
        if status:
            sys.stderr.write("\n")
        summary = _summary(state, reader, latency, pipe, bundle, cfg, port, wav, record, time.monotonic() - t_start)
        if json_path is not None:
            p = Path(json_path)
            tmp = p.with_name(p.name + ".tmp")
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
            os.replace(tmp, p)
    return summary


def _summary(state, reader, latency, pipe, bundle, cfg, port, wav, record, wall_s) -> dict:
    c = reader.counters
    return {
        "port": port,
        "bundle": str(bundle.path),
        "config": cfg.to_dict(),
        "mode": state["mode"],
        "stop_reason": state["stop_reason"],
        "wall_s": round(wall_s, 3),
        "frames_out": state["frames_out"],
        "seconds_out": state["frames_out"] / 125.0,
        "gap_frames": state["gap_frames"],
        "packets_ok": c.packets,
        "packets_bad_crc": c.crc_failures + c.header_crc_failures,
        "bad_headers": c.bad_headers,
        "rejected_payloads": c.rejected_payloads,
        "gaps": c.gaps,
        "lost_packets": c.lost,
        "duplicates": c.duplicates,
        "reordered": c.reordered,
        "resyncs": c.resyncs,
        "reconnects": c.reconnects,
        "stalls": c.stalls,
        "queue_overflows": c.queue_overflows,
        "host_skipped_samples": state["host_skipped_samples"],
        "unfilled_gap_samples": state["unfilled_gap_samples"],
        "bytes": c.bytes,
        "blind_s": round(state["blind_s"], 4),
        "blind_periods": state["blind_periods"],
        "latency_ms": latency.summary(),
        "synth_clamped": int(pipe.synth.n_clamped),
        "device_info": state["device_info"],
        "first_device_time_us": state["first_device_time_us"],
        "wav": None if wav is None else str(wav),
        "record": None if record is None else str(record),
    }
