# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Cython binding of the C synthesizer (``csrc/edsynth.h``), built as ``edgensd._csynth``.

Low level: whole arrays go through one call (no per-frame Python overhead) with the GIL released. Use
:class:`edgensd.csynth.CSynth`, which checks arguments and turns file errors into clear ``ValueError``\\ s.
"""

from libc.stdint cimport int16_t, int32_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc

import numpy as np


cdef extern from "edsynth.h" nogil:
    enum:
        EDS_SAMPLE_RATE
        EDS_HOP
        EDS_N_BINS
        EDS_N_PARAMS
        EDS_NOISE_FFT
        EDS_NOISE_BINS
        EDS_MAX_HARMONICS
        EDS_FILE_VERSION
        EDS_HEADER_BYTES
        EDS_PAYLOAD_FLOATS
        EDS_FILE_BYTES
        EDS_OK
        EDS_E_NULL
        EDS_E_SHORT
        EDS_E_MAGIC
        EDS_E_VERSION
        EDS_E_LAYOUT
        EDS_E_SIZE
        EDS_E_CHECKSUM
        EDS_E_VALUE
        EDS_E_HARMONICS

    ctypedef struct eds_load_info:
        uint32_t version
        uint32_t expected_bytes
        uint32_t actual_bytes
        uint32_t crc_stored
        uint32_t crc_computed
        int32_t bad_index

    ctypedef struct eds_weights:
        float lo[18]
        float hi[18]
        uint32_t n_harmonics
        char voice_name[17]

    ctypedef struct eds_state:
        uint32_t phase
        uint32_t frame_index
        uint32_t n_clamped

    ctypedef struct eds_fx_weights:
        uint32_t n_harmonics

    ctypedef struct eds_fx_state:
        uint32_t phase
        uint32_t frame_index
        uint32_t n_clamped
        uint32_t n_saturated

    const char *eds_status_message(int status)
    uint32_t eds_crc32(const void *data, size_t n_bytes)
    int eds_file_check(const void *data, size_t n_bytes, eds_load_info *info)
    uint32_t eds_lowbias32(uint32_t x)

    int eds_weights_load(eds_weights *w, const void *data, size_t n_bytes, eds_load_info *info)
    uint32_t eds_clamp_params(const eds_weights *w, const float *inp, float *out)
    uint32_t eds_spectrogram_frame(const eds_weights *w, const float *params, float *power, float *norm)
    void eds_state_init(eds_state *s, const eds_weights *w, uint32_t seed, int include_background)
    void eds_state_reset(eds_state *s)
    uint32_t eds_render_frame(eds_state *s, const float *params, float *out)
    void eds_harmonic_amplitudes(const eds_weights *w, const float *p, float *amp)
    void eds_noise_gain(const eds_weights *w, const float *p, int include_background, float *gain)
    void eds_white_noise(uint32_t seed, uint32_t frame_index, float *out)
    void eds_rfft256(const float *x, float *spec)
    void eds_irfft256(const float *spec, float *x)
    void eds_fx_params_from_float(const float *inp, int32_t *out)

    int eds_fx_weights_load(eds_fx_weights *w, const void *data, size_t n_bytes, eds_load_info *info)
    void eds_fx_state_init(eds_fx_state *s, const eds_fx_weights *w, uint32_t seed, int include_background)
    void eds_fx_state_reset(eds_fx_state *s)
    uint32_t eds_fx_render_frame(eds_fx_state *s, const int32_t *params_q16, int16_t *out)
    uint32_t eds_fx_harmonic_amplitudes(const eds_fx_weights *w, const int32_t *p, int32_t *amp)
    uint32_t eds_fx_noise_gain(const eds_fx_weights *w, const int32_t *p, int include_background, int32_t *gain)


SAMPLE_RATE = EDS_SAMPLE_RATE
HOP = EDS_HOP
N_BINS = EDS_N_BINS
N_PARAMS = EDS_N_PARAMS
NOISE_FFT = EDS_NOISE_FFT
NOISE_BINS = EDS_NOISE_BINS
MAX_HARMONICS = EDS_MAX_HARMONICS
FILE_VERSION = EDS_FILE_VERSION
HEADER_BYTES = EDS_HEADER_BYTES
PAYLOAD_FLOATS = EDS_PAYLOAD_FLOATS
FILE_BYTES = EDS_FILE_BYTES
STATUS = {
    "OK": EDS_OK, "NULL": EDS_E_NULL, "SHORT": EDS_E_SHORT, "MAGIC": EDS_E_MAGIC, "VERSION": EDS_E_VERSION,
    "LAYOUT": EDS_E_LAYOUT, "SIZE": EDS_E_SIZE, "CHECKSUM": EDS_E_CHECKSUM, "VALUE": EDS_E_VALUE,
    "HARMONICS": EDS_E_HARMONICS,
}


def status_message(int status):
    """Text of a C status code."""
    return eds_status_message(status).decode("ascii")


def crc32(const uint8_t[::1] data):
    """CRC-32 of a byte buffer, computed by the C core."""
    cdef const uint8_t *ptr = &data[0] if data.shape[0] else NULL
    return eds_crc32(ptr, data.shape[0])


def check_file(const uint8_t[::1] data):
    """Check a synth file image in C. Returns ``(status, info)``, ``info`` a dict of what was found."""
    cdef eds_load_info info
    cdef const uint8_t *ptr = &data[0] if data.shape[0] else <const uint8_t *>b"\0"
    cdef int st = eds_file_check(ptr, data.shape[0], &info)
    return st, {"version": info.version, "expected_bytes": info.expected_bytes, "actual_bytes": info.actual_bytes,
                "crc_stored": info.crc_stored, "crc_computed": info.crc_computed, "bad_index": info.bad_index}


def lowbias32(x):
    """The noise hash on a uint32 array (C implementation)."""
    cdef const uint32_t[::1] v = np.ascontiguousarray(x, dtype=np.uint32).ravel()
    out = np.empty(v.shape[0], np.uint32)
    cdef uint32_t[::1] o = out
    cdef Py_ssize_t i
    for i in range(v.shape[0]):
        o[i] = eds_lowbias32(v[i])
    return out.reshape(np.shape(x))


def white_noise(uint32_t seed, uint32_t frame_index):
    """256 noise samples of one frame (C implementation), float32."""
    out = np.empty(EDS_NOISE_FFT, np.float32)
    cdef float[::1] o = out
    eds_white_noise(seed, frame_index, &o[0])
    return out


def rfft256(const float[::1] x):
    """C real FFT of 256 float32 samples -> 129 complex64 bins (unnormalized, as numpy.fft.rfft)."""
    if x.shape[0] != EDS_NOISE_FFT:
        raise ValueError(f"x must hold {EDS_NOISE_FFT} samples, got {x.shape[0]}")
    out = np.empty(2 * EDS_NOISE_BINS, np.float32)
    cdef float[::1] o = out
    eds_rfft256(&x[0], &o[0])
    return out.view(np.complex64)


def irfft256(spec):
    """C inverse real FFT: 129 complex64 bins -> 256 float32 samples (as numpy.fft.irfft, n=256)."""
    arr = np.ascontiguousarray(spec, dtype=np.complex64)
    if arr.shape != (EDS_NOISE_BINS,):
        raise ValueError(f"spec must have shape ({EDS_NOISE_BINS},), got {arr.shape}")
    cdef const float[::1] s = arr.view(np.float32)
    out = np.empty(EDS_NOISE_FFT, np.float32)
    cdef float[::1] o = out
    eds_irfft256(&s[0], &o[0])
    return out


cdef class Engine:
    """Float and fixed-point C synthesizers for one synth file image and seed (state in C structs)."""

    cdef eds_weights *w
    cdef eds_state *st
    cdef eds_fx_weights *fw
    cdef eds_fx_state *fst

    def __cinit__(self):
        self.w = <eds_weights *> malloc(sizeof(eds_weights))
        self.st = <eds_state *> malloc(sizeof(eds_state))
        self.fw = <eds_fx_weights *> malloc(sizeof(eds_fx_weights))
        self.fst = <eds_fx_state *> malloc(sizeof(eds_fx_state))
        if not (self.w and self.st and self.fw and self.fst):
            raise MemoryError("cannot allocate the C synthesizer state")

    def __dealloc__(self):
        free(self.w)
        free(self.st)
        free(self.fw)
        free(self.fst)

    def __init__(self, const uint8_t[::1] data, uint32_t seed=0, bint include_background=False):
        cdef int rc
        if data.shape[0] == 0:
            raise ValueError("synth file image is empty")
        rc = eds_weights_load(self.w, &data[0], data.shape[0], NULL)
        if rc == EDS_OK:
            rc = eds_fx_weights_load(self.fw, &data[0], data.shape[0], NULL)
        if rc != EDS_OK:
            raise ValueError(f"synth file image refused: {status_message(rc)} (status {rc})")
        eds_state_init(self.st, self.w, seed, include_background)
        eds_fx_state_init(self.fst, self.fw, seed, include_background)

    @property
    def n_harmonics(self):
        return self.w.n_harmonics

    @property
    def voice_name(self):
        return self.w.voice_name.decode("ascii", "replace")

    @property
    def bounds(self):
        """(lo, hi) parameter bounds the C side clamps to, two float32 arrays (18,)."""
        lo = np.array([self.w.lo[i] for i in range(EDS_N_PARAMS)], np.float32)
        hi = np.array([self.w.hi[i] for i in range(EDS_N_PARAMS)], np.float32)
        return lo, hi

    @property
    def n_clamped(self):
        """Parameter values clamped by the float audio path since the last reset."""
        return self.st.n_clamped

    @property
    def fx_n_clamped(self):
        return self.fst.n_clamped

    @property
    def fx_n_saturated(self):
        return self.fst.n_saturated

    @property
    def frame_index(self):
        return self.st.frame_index

    def reset(self):
        """Reset both audio states (float and fixed point)."""
        eds_state_reset(self.st)
        eds_fx_state_reset(self.fst)

    def spectrogram(self, const float[:, ::1] params, bint power=False):
        """Spectrogram frames (n, 256) float32: normalized dB, or power if ``power``; and the clamp count."""
        cdef Py_ssize_t n = params.shape[0], t
        cdef uint32_t n_bad = 0
        if params.shape[1] != EDS_N_PARAMS:
            raise ValueError(f"params must have shape (n_frames, {EDS_N_PARAMS}), got {tuple(params.shape)}")
        out = np.empty((n, EDS_N_BINS), np.float32)
        cdef float[:, ::1] o = out
        with nogil:
            for t in range(n):
                if power:
                    n_bad += eds_spectrogram_frame(self.w, &params[t, 0], &o[t, 0], NULL)
                else:
                    n_bad += eds_spectrogram_frame(self.w, &params[t, 0], NULL, &o[t, 0])
        return out, n_bad

    def push(self, const float[:, ::1] params):
        """Push frames in order through the float renderer; returns (n * 128,) float32 samples."""
        cdef Py_ssize_t n = params.shape[0], t
        if params.shape[1] != EDS_N_PARAMS:
            raise ValueError(f"params must have shape (n_frames, {EDS_N_PARAMS}), got {tuple(params.shape)}")
        out = np.empty(n * EDS_HOP, np.float32)
        cdef float[::1] o = out
        with nogil:
            for t in range(n):
                eds_render_frame(self.st, &params[t, 0], &o[t * EDS_HOP])
        return out

    def push_fixed(self, const float[:, ::1] params):
        """Push frames through the fixed-point renderer (params converted to Q16.16); (n * 128,) int16 Q15."""
        cdef Py_ssize_t n = params.shape[0], t
        cdef int32_t q[18]
        if params.shape[1] != EDS_N_PARAMS:
            raise ValueError(f"params must have shape (n_frames, {EDS_N_PARAMS}), got {tuple(params.shape)}")
        out = np.empty(n * EDS_HOP, np.int16)
        cdef int16_t[::1] o = out
        with nogil:
            for t in range(n):
                eds_fx_params_from_float(&params[t, 0], q)
                eds_fx_render_frame(self.fst, q, &o[t * EDS_HOP])
        return out

    def clamp(self, const float[::1] p):
        """Clamp one frame in C; returns (clamped float32 (18,), count)."""
        out = np.empty(EDS_N_PARAMS, np.float32)
        cdef float[::1] o = out
        n_bad = eds_clamp_params(self.w, &p[0], &o[0])
        return out, n_bad

    def harmonic_amplitudes(self, const float[::1] p):
        """Float harmonic amplitudes (n_harmonics,) of one clamped frame."""
        cdef float amp[EDS_MAX_HARMONICS]
        eds_harmonic_amplitudes(self.w, &p[0], amp)
        return np.array([amp[i] for i in range(self.w.n_harmonics)], np.float32)

    def noise_gain(self, const float[::1] p, bint include_background=False):
        """Float noise gains (129,) of one clamped frame."""
        out = np.empty(EDS_NOISE_BINS, np.float32)
        cdef float[::1] o = out
        eds_noise_gain(self.w, &p[0], include_background, &o[0])
        return out

    def fx_harmonic_amplitudes(self, const float[::1] p):
        """Fixed-point harmonic amplitudes of one clamped frame, as floats (Q20 / 2^20)."""
        cdef int32_t q[18]
        cdef int32_t amp[EDS_MAX_HARMONICS]
        eds_fx_params_from_float(&p[0], q)
        eds_fx_harmonic_amplitudes(self.fw, q, amp)
        return np.array([amp[i] for i in range(self.fw.n_harmonics)], np.float64) / 2.0**20

    def fx_noise_gain(self, const float[::1] p, bint include_background=False):
        """Fixed-point noise gains (129,) of one clamped frame, as floats (Q20 / 2^20)."""
        cdef int32_t q[18]
        cdef int32_t g[EDS_NOISE_BINS]
        eds_fx_params_from_float(&p[0], q)
        eds_fx_noise_gain(self.fw, q, include_background, g)
        return np.array([g[i] for i in range(EDS_NOISE_BINS)], np.float64) / 2.0**20
