/* edsynth_internal.h -- shared by the edsynth sources only (not part of the public API). */
#ifndef EDSYNTH_INTERNAL_H
#define EDSYNTH_INTERNAL_H

#include "edsynth.h"

/* ---- generated constant tables (edsynth_tables.c, from csrc/gen_tables.py) ---------------------------- */
#define EDS_WIN_TABLE_N 257        /* WIN_HALF_BINS * WIN_OVERSAMPLE + 1 */
#define EDS_WIN_OVERSAMPLE 64
#define EDS_FX_SIN_BITS 10
#define EDS_FX_LOG2_BITS 8
#define EDS_FX_EXP2_BITS 8

#ifndef EDSYNTH_FIXED_ONLY
extern const float eds_win_table[EDS_WIN_TABLE_N];
extern const float eds_bin_hz[EDS_N_BINS];
extern const float eds_sqrt_hann[EDS_NOISE_FFT];
extern const float eds_cos128[64];
extern const float eds_sin128[64];
extern const float eds_cos256[129];
extern const float eds_sin256[129];
extern const float eds_noise_hz[EDS_NOISE_BINS_PADDED];
#endif
extern const uint8_t eds_bitrev7[128];
extern const uint8_t eds_bg_index[EDS_NOISE_BINS];
extern const int32_t eds_fx_sin_q30[(1 << EDS_FX_SIN_BITS) + 1];
extern const uint32_t eds_fx_log2_q30[(1 << EDS_FX_LOG2_BITS) + 1];
extern const uint32_t eds_fx_exp2_q30[(1 << EDS_FX_EXP2_BITS) + 1];
extern const int32_t eds_fx_sqrt_hann_q30[EDS_NOISE_FFT];
extern const int32_t eds_fx_cos128_q30[64];
extern const int32_t eds_fx_sin128_q30[64];
extern const int32_t eds_fx_cos256_q30[129];
extern const int32_t eds_fx_sin256_q30[129];

/* ---- payload layout (float32 index of each array) ----------------------------------------------------- */
#define EDS_OFF_LO 0
#define EDS_OFF_HI (EDS_OFF_LO + EDS_N_PARAMS)
#define EDS_OFF_SHAPE (EDS_OFF_HI + EDS_N_PARAMS)
#define EDS_OFF_BW0 (EDS_OFF_SHAPE + EDS_N_SHAPES * EDS_N_KNOTS)
#define EDS_OFF_BWS (EDS_OFF_BW0 + EDS_N_FORMANTS)
#define EDS_OFF_GV (EDS_OFF_BWS + EDS_N_FORMANTS)
#define EDS_OFF_GN (EDS_OFF_GV + EDS_N_GAIN)
#define EDS_OFF_BG (EDS_OFF_GN + EDS_N_GAIN)
#define EDS_OFF_END (EDS_OFF_BG + EDS_N_BINS)

/** Largest sum of |gain coefficient| (dB) a synth file may hold: keeps every gain finite in float32. */
#define EDS_MAX_GAIN_DB_SUM 120

/** A checked synth file: where its payload words are, K and the voice name. */
typedef struct eds_file_view {
    const uint8_t *payload;
    uint32_t n_harmonics;
    char voice_name[EDS_VOICE_NAME_BYTES + 1];
} eds_file_view;

/** Full check (structure, checksum and values, integer arithmetic only) shared by both loaders. */
int eds_file_open(const void *data, size_t n_bytes, eds_load_info *info, eds_file_view *view);

/** Payload float `i` of a checked file, as its IEEE-754 bit pattern. */
uint32_t eds_payload_bits(const eds_file_view *view, uint32_t i);

/** IEEE-754 float32 bits -> signed fixed point with `frac_bits` fraction bits, rounded, saturated to int32. */
int32_t eds_f32bits_to_fixed(uint32_t bits, int frac_bits);

/** IEEE-754 float32 bits (non-negative) -> unsigned 64-bit fixed point with `frac_bits` fraction bits. */
uint64_t eds_f32bits_to_u64_fixed(uint32_t bits, int frac_bits);

#endif /* EDSYNTH_INTERNAL_H */
