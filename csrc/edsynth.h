/*
 * edsynth.h -- the edgensd speech synthesizer in portable C99.
 *
 * Two products from one frame of 18 speech parameters (physical units, see edgensd/params.py):
 *   - a 256-bin normalized-dB spectrogram frame, matching the PyTorch synthesizer in deterministic mode
 *     (edgensd/speech/synth.py);
 *   - 128 audio samples (8 ms at 16 kHz), harmonic-plus-noise with continuous phase, matching the numpy
 *     frame renderer (edgensd/speech/render.py) operation for operation.
 * The audio path also exists in fixed point (Q15/Q30 integer arithmetic, no FPU), see the second half.
 *
 * Rules of the core: C99, libc/libm only, no allocation, no locks, no global mutable state. Every piece
 * of state lives in a caller-owned struct (eds_weights, eds_state, eds_fx_weights, eds_fx_state); the
 * caller may place them in static memory. The per-frame functions are reentrant for distinct states.
 *
 * Build-time selection:
 *   EDSYNTH_FIXED_ONLY   compile only the integer (fixed-point) audio path; no float code or tables are
 *                        built, so the library runs on cores without an FPU (Cortex-M0/M3). The x86 build
 *                        of the tests proves it with -mgeneral-regs-only.
 *   EDS_MAX_HARMONICS    size of the per-state harmonic arrays (default 256: voices with f0 >= 31.25 Hz).
 * Float arithmetic must be evaluated in float32 without contraction (FLT_EVAL_METHOD 0; gcc: -std=c99 or
 * -ffp-contract=off, which the Makefile passes) for the audio to match the numpy reference to ~1e-6.
 *
 * Synth file (edgensd export synth): version 1, all fields little-endian.
 *   offset  size  field
 *        0     8  magic "EDSYNTH\0"
 *        8     4  format version (1)
 *       12     4  header bytes (64)
 *       16     4  payload bytes (EDS_PAYLOAD_FLOATS * 4)
 *       20     4  n_formants (6)      24  4  n_knots (33)     28  4  n_gain_terms (24)
 *       32     4  n_bins (256)        36  4  n_harmonics K = ceil(8000 / f0_min)
 *       40    16  voice name (ASCII, NUL padded)
 *       56     8  reserved (0)
 *       64        payload, float32: lo[18], hi[18] (parameter bounds), shape tables[7][33] (-ln s at the
 *                 knots), bw0_hz[6], bw_slope[6], gain_v_db[24], gain_n_db[24], background[256]
 *  64+4*583    4  CRC-32 (IEEE 802.3, as zlib.crc32) of every byte before it
 */
#ifndef EDSYNTH_H
#define EDSYNTH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- conventions (edgensd/spectrogram.py, edgensd/params.py) ---------------------------------------- */
#define EDS_SAMPLE_RATE 16000
#define EDS_HOP 128              /* samples per frame (8 ms) */
#define EDS_N_BINS 256           /* STFT bins (511-point window), 0..7984 Hz */
#define EDS_N_PARAMS 18
#define EDS_N_FORMANTS 6
#define EDS_N_SHAPES 7           /* 6 voiced formant shapes + the unvoiced one */
#define EDS_N_KNOTS 33
#define EDS_N_GAIN 24            /* cosine terms of a gain curve */
#define EDS_NOISE_FFT 256
#define EDS_NOISE_BINS 129
#define EDS_NOISE_BINS_PADDED 144 /* 129 rounded up to the float path's block of 16 */
#ifndef EDS_MAX_HARMONICS
#define EDS_MAX_HARMONICS 256
#endif

enum eds_param {
    EDS_P_F0 = 0, EDS_P_LOUD = 1, EDS_P_ALPHA = 2,
    EDS_P_F1 = 3,  /* F1..F6 at 3..8 (Hz) */
    EDS_P_A1 = 9,  /* A1..A6 at 9..14 */
    EDS_P_FU = 15, EDS_P_BU = 16, EDS_P_AU = 17
};

/* ---- synth file ----------------------------------------------------------------------------------- */
#define EDS_FILE_VERSION 1u
#define EDS_HEADER_BYTES 64u
#define EDS_PAYLOAD_FLOATS 583u
#define EDS_FILE_BYTES (EDS_HEADER_BYTES + 4u * EDS_PAYLOAD_FLOATS + 4u)
#define EDS_VOICE_NAME_BYTES 16

/** Status codes (0 = success; negative = the file or an argument was refused). */
enum eds_status {
    EDS_OK = 0,
    EDS_E_NULL = -1,      /* a required pointer argument is NULL */
    EDS_E_SHORT = -2,     /* fewer bytes than a header */
    EDS_E_MAGIC = -3,     /* not a synth file (magic) */
    EDS_E_VERSION = -4,   /* unsupported format version */
    EDS_E_LAYOUT = -5,    /* header sizes/dimensions differ from this build's */
    EDS_E_SIZE = -6,      /* total size differs from what the header declares */
    EDS_E_CHECKSUM = -7,  /* CRC-32 mismatch (corrupted) */
    EDS_E_VALUE = -8,     /* a value is NaN/inf or outside what the synthesizer accepts */
    EDS_E_HARMONICS = -9  /* n_harmonics inconsistent with f0_min or above EDS_MAX_HARMONICS */
};

/** What the loader found (filled as far as it got; optional). */
typedef struct eds_load_info {
    uint32_t version;         /* version field of the file (0 if not read) */
    uint32_t expected_bytes;  /* size the header declares (or this build expects) */
    uint32_t actual_bytes;    /* size given (saturated at 2^32 - 1) */
    uint32_t crc_stored;
    uint32_t crc_computed;
    int32_t bad_index;        /* EDS_E_VALUE/EDS_E_LAYOUT: payload float index / header word offset, else -1 */
} eds_load_info;

/** Human-readable text of a status code (static string). */
const char *eds_status_message(int status);

/** CRC-32 (IEEE 802.3, reflected, init and final xor 0xFFFFFFFF), as zlib.crc32. */
uint32_t eds_crc32(const void *data, size_t n_bytes);

/** Check a synth file image (magic, version, layout, size, checksum) without decoding values. */
int eds_file_check(const void *data, size_t n_bytes, eds_load_info *info);

/* ---- noise generator (bit-identical to render.py) --------------------------------------------------- */
/** lowbias32 integer hash. */
uint32_t eds_lowbias32(uint32_t x);

#ifndef EDSYNTH_FIXED_ONLY
/* ===================================== float32 synthesizer =========================================== */

/** The learned parts (SynthWeights) plus tables derived from them at load time. Fill with eds_weights_load. */
typedef struct eds_weights {
    float lo[EDS_N_PARAMS], hi[EDS_N_PARAMS];     /* clamp bounds of each parameter (voice range) */
    float shape[EDS_N_SHAPES][EDS_N_KNOTS];       /* -ln s at the knots */
    float bw0_hz[EDS_N_FORMANTS], bw_slope[EDS_N_FORMANTS];
    float gain_v_db[EDS_N_GAIN], gain_n_db[EDS_N_GAIN];
    float background[EDS_N_BINS];                 /* background-noise power per STFT bin */
    uint32_t n_harmonics;                         /* K */
    char voice_name[EDS_VOICE_NAME_BYTES + 1];
    /* derived */
    float gn_bin[EDS_N_BINS];                     /* 10^(Gn(f)/10) at the STFT bins */
    float gn_noise[EDS_NOISE_BINS_PADDED];        /* 10^(Gn(f)/10) at the noise FFT bins (62.5 Hz), 0-padded */
    float bg_noise[EDS_NOISE_BINS];               /* background power picked for the noise FFT bins */
    float shape_z0[EDS_N_SHAPES][EDS_N_KNOTS + 1];  /* -g log2(e) at the knots (g <= 87), cut-off entry last */
    float shape_dz[EDS_N_SHAPES][EDS_N_KNOTS + 1];  /* its step to the next knot */
} eds_weights;

/** Streaming audio state of one voice (phase, previous frame, noise tail, counters). */
typedef struct eds_state {
    const eds_weights *w;
    uint32_t seed;
    int include_background;
    int have_prev;
    uint32_t phase;          /* fundamental phase, 2^32 = one turn */
    uint32_t frame_index;    /* noise counter (frames pushed, mod 2^32) */
    uint32_t n_clamped;      /* parameter values clamped since init/reset (saturating) */
    float prev[EDS_N_PARAMS];
    float prev_amp[EDS_MAX_HARMONICS];
    float amp[EDS_MAX_HARMONICS];                 /* scratch */
    float fh[EDS_MAX_HARMONICS + 16];             /* scratch: harmonic frequencies */
    float env[EDS_MAX_HARMONICS + 16];            /* scratch: envelope / noise gains */
    float su[EDS_NOISE_BINS_PADDED];              /* scratch */
    int32_t iwork[EDS_MAX_HARMONICS + 16];        /* scratch */
    uint32_t acc[EDS_HOP];                        /* scratch: per-sample phase */
    float tail[EDS_HOP];                          /* second half of the last noise segment */
    float work[2 * EDS_NOISE_FFT + 2];            /* scratch: FFT */
} eds_state;

/**
 * Load a synth file image (as written by `edgensd export synth`) into `w`.
 * Returns EDS_OK or a negative eds_status; `info` (may be NULL) says what was found.
 * `w` is untouched unless the file is accepted.
 */
int eds_weights_load(eds_weights *w, const void *data, size_t n_bytes, eds_load_info *info);

/**
 * Clamp one parameter frame into the voice range: NaN -> lower bound, +-inf and out-of-range values to
 * the nearest bound. Returns how many of the 18 values were NaN/inf or out of range (render.py's count).
 */
uint32_t eds_clamp_params(const eds_weights *w, const float in[EDS_N_PARAMS], float out[EDS_N_PARAMS]);

/**
 * One spectrogram frame: parameters -> power per STFT bin (`power`, may be NULL) and normalized dB in
 * [-1, 1] (`norm`, may be NULL). Parameters are clamped first; returns the number of clamped values.
 * Uses about 2 KiB of stack.
 */
uint32_t eds_spectrogram_frame(const eds_weights *w, const float params[EDS_N_PARAMS],
                               float power[EDS_N_BINS], float norm[EDS_N_BINS]);

/** Initialize (and reset) an audio state for weights `w` (which must outlive it). */
void eds_state_init(eds_state *s, const eds_weights *w, uint32_t seed, int include_background);

/** Forget phase, previous frame, noise tail, frame counter and clamp count (keeps weights and seed). */
void eds_state_reset(eds_state *s);

/**
 * Push parameter frame t; writes audio samples [128 (t-1), 128 t) to `out` (render.py's FrameRenderer.push).
 * Returns the number of parameter values clamped in this frame.
 */
uint32_t eds_render_frame(eds_state *s, const float params[EDS_N_PARAMS], float out[EDS_HOP]);

/** Harmonic amplitudes (K = w->n_harmonics values) of one already-clamped frame. */
void eds_harmonic_amplitudes(const eds_weights *w, const float p[EDS_N_PARAMS], float amp[EDS_MAX_HARMONICS]);

/** FFT-domain amplitude gain of the noise source (129 bins) of one already-clamped frame. */
void eds_noise_gain(const eds_weights *w, const float p[EDS_N_PARAMS], int include_background,
                    float gain[EDS_NOISE_BINS]);

/** Uniform white noise of unit variance for frame `frame_index` (render.py's white_noise). */
void eds_white_noise(uint32_t seed, uint32_t frame_index, float out[EDS_NOISE_FFT]);

/** Real FFT of 256 points: spec[2k], spec[2k+1] = Re, Im of bin k = 0..128 (unnormalized, as numpy). */
void eds_rfft256(const float x[EDS_NOISE_FFT], float spec[2 * EDS_NOISE_BINS]);

/** Inverse of eds_rfft256 (scaled by 1/256 as numpy.fft.irfft; imaginary parts of bins 0, 128 ignored). */
void eds_irfft256(const float spec[2 * EDS_NOISE_BINS], float x[EDS_NOISE_FFT]);

/** Float parameters -> Q16.16 for the fixed-point path (NaN and +-inf map to values the clamp counts). */
void eds_fx_params_from_float(const float in[EDS_N_PARAMS], int32_t out[EDS_N_PARAMS]);
#endif /* EDSYNTH_FIXED_ONLY */

/* ================================ fixed-point audio path (no FPU) ===================================== */
/*
 * Number formats: parameters Q16.16 (physical units times 65536), gains and amplitudes Q20, sine and
 * windows Q30, output samples Q15 (int16, saturated). Uses 32x32->64-bit integer products (one
 * instruction on Cortex-M3/M4, a library call on M0).
 */

/** Fixed-point weights, converted from the same synth file by eds_fx_weights_load (integers only). */
typedef struct eds_fx_weights {
    int32_t lo[EDS_N_PARAMS], hi[EDS_N_PARAMS];   /* Q16.16 */
    int32_t shape[EDS_N_SHAPES][EDS_N_KNOTS];     /* -ln s, Q16.16 (saturated at 32767) */
    int32_t bw0_hz[EDS_N_FORMANTS];               /* Q16.16 */
    int32_t bw_slope[EDS_N_FORMANTS];             /* Q24 */
    int32_t gain_v_db[EDS_N_GAIN];                /* Q16.16 */
    int32_t gn_log2_noise[EDS_NOISE_BINS];        /* log2 of the noise gain curve at the noise bins, Q16.16 */
    uint64_t bg_noise_q40[EDS_NOISE_BINS];        /* background power at the noise bins, Q40 */
    uint32_t n_harmonics;
} eds_fx_weights;

/** Streaming fixed-point audio state. */
typedef struct eds_fx_state {
    const eds_fx_weights *w;
    uint32_t seed;
    int include_background;
    int have_prev;
    uint32_t phase;
    uint32_t frame_index;
    uint32_t n_clamped;        /* parameter values clamped (saturating) */
    uint32_t n_saturated;      /* amplitudes, gains or output samples that hit their range (saturating) */
    int32_t prev[EDS_N_PARAMS];
    int32_t prev_amp[EDS_MAX_HARMONICS];          /* Q20 */
    int32_t amp[EDS_MAX_HARMONICS];               /* scratch */
    uint32_t acc[EDS_HOP];                        /* scratch */
    int32_t tail[EDS_HOP];                        /* Q20 */
    int32_t gain[EDS_NOISE_BINS];                 /* scratch, Q20 */
    int32_t work[2 * EDS_NOISE_FFT + 2];          /* scratch: FFT */
} eds_fx_state;

/** Load a synth file image into fixed-point weights (integer arithmetic only). */
int eds_fx_weights_load(eds_fx_weights *w, const void *data, size_t n_bytes, eds_load_info *info);

/** Clamp Q16.16 parameters into the voice range; returns the number of values out of range. */
uint32_t eds_fx_clamp_params(const eds_fx_weights *w, const int32_t in[EDS_N_PARAMS], int32_t out[EDS_N_PARAMS]);

void eds_fx_state_init(eds_fx_state *s, const eds_fx_weights *w, uint32_t seed, int include_background);
void eds_fx_state_reset(eds_fx_state *s);

/** Fixed-point twin of eds_render_frame: Q16.16 parameters in, Q15 samples out. Returns clamped count. */
uint32_t eds_fx_render_frame(eds_fx_state *s, const int32_t params_q16[EDS_N_PARAMS], int16_t out[EDS_HOP]);

/** Harmonic amplitudes (Q20) of one clamped Q16.16 frame; returns how many hit the amplitude limit. */
uint32_t eds_fx_harmonic_amplitudes(const eds_fx_weights *w, const int32_t p[EDS_N_PARAMS],
                                    int32_t amp[EDS_MAX_HARMONICS]);

/** Noise gains (Q20, 129 bins) of one clamped Q16.16 frame; returns how many hit the gain limit. */
uint32_t eds_fx_noise_gain(const eds_fx_weights *w, const int32_t p[EDS_N_PARAMS], int include_background,
                           int32_t gain[EDS_NOISE_BINS]);

#ifdef __cplusplus
}
#endif
#endif /* EDSYNTH_H */
