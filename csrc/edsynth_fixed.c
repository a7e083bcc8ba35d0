/*
 * edsynth_fixed.c -- fixed-point audio path: the same harmonic-plus-noise renderer as eds_render_frame,
 * in integer arithmetic only (no float type appears in this file), for cores without an FPU.
 *
 * Formats: parameters Q16.16; log2 values Q16.16; shapes and envelopes Q30; amplitudes and noise gains
 * Q20; sine, windows and twiddles Q30; noise samples Q24 into the forward FFT, Q25 into the inverse;
 * noise segments and the mix Q18; output Q15 (int16, saturated).
 *
 * Where the float path multiplies gains, this one adds their log2 and takes one exp2 (amplitude^2 and
 * noise power are formed in Q40, then an integer square root gives Q20), so every factor keeps about
 * 16 significant bits whatever the loudness. Limits: a harmonic amplitude above 4.0 or a noise gain above
 * 8.0 (both far beyond full scale) is saturated and counted in eds_fx_state.n_saturated; with those limits
 * no intermediate value can overflow (see the bounds at each step).
 */
#include "edsynth_internal.h"

#include <string.h>

#define FX_LOG2_ZERO (-(1 << 30))           /* log2(0) stand-in, Q16.16: exp2 of it is 0 */
#define FX_LOG2_10_OVER_10_Q30 356689313     /* log2(10) / 10 */
#define FX_LOG2_16000_Q16 915262             /* log2(16000) */
#define FX_LOG2E_Q30 1549082005              /* log2(e) */
#define FX_PHASE_PER_HZ_Q16 17592186044ULL   /* 2^48 / 16000: phase step (2^32 = 1 turn) per Q16.16 Hz */
#define FX_SQRT3_Q30 1859775393              /* sqrt(3) */
#define FX_AMP_MAX ((int32_t)(4u << 20) - 1) /* Q20 */
#define FX_GAIN_MAX ((int32_t)(8u << 20))    /* Q20 */
#define FX_HZ(x) ((int32_t)(x) * 65536)      /* integer Hz -> Q16.16 */

/* ---- integer helpers ------------------------------------------------------------------------------------ */

/* floor(x / 2^s) for signed x (portable: no right shift of a negative value) */
static int64_t asr64(int64_t x, int s)
{
    return x >= 0 ? x >> s : ~((~x) >> s);
}

/* round(x / 2^s), s >= 1 */
static int64_t rshr64(int64_t x, int s)
{
    return asr64(x + ((int64_t)1 << (s - 1)), s);
}

static int clz64(uint64_t v)
{
    int n = 0;
    if (v == 0u)
        return 64;
    if (!(v >> 32)) { n += 32; v <<= 32; }
    if (!(v >> 48)) { n += 16; v <<= 16; }
    if (!(v >> 56)) { n += 8; v <<= 8; }
    if (!(v >> 60)) { n += 4; v <<= 4; }
    if (!(v >> 62)) { n += 2; v <<= 2; }
    if (!(v >> 63)) { n += 1; }
    return n;
}

/* log2(v / 2^q) in Q16.16; FX_LOG2_ZERO for v = 0. Table of 257 + linear interpolation (error < 3e-6). */
static int32_t fx_log2(uint64_t v, int q)
{
    int msb;
    uint64_t m;
    uint32_t idx, frac, t0, t1, mant;
    if (v == 0u)
        return FX_LOG2_ZERO;
    msb = 63 - clz64(v);
    m = v << (63 - msb);
    idx = (uint32_t)(m >> 55) & 0xFFu;
    frac = (uint32_t)(m >> 39) & 0xFFFFu;
    t0 = eds_fx_log2_q30[idx];
    t1 = eds_fx_log2_q30[idx + 1u];
    mant = t0 + (uint32_t)(((uint64_t)(t1 - t0) * frac) >> 16);
    return (int32_t)(msb - q) * 65536 + (int32_t)((mant + (1u << 13)) >> 14);
}

/* 2^(e / 65536) * 2^q as an unsigned integer; saturates at 2^62 and underflows to 0. */
static uint64_t fx_exp2(int32_t e, int q)
{
    uint32_t fr = (uint32_t)e & 0xFFFFu;
    int32_t ip = (e - (int32_t)fr) / 65536;
    uint32_t idx = fr >> 8, f8 = fr & 0xFFu;
    uint32_t t0 = eds_fx_exp2_q30[idx], t1 = eds_fx_exp2_q30[idx + 1u];
    uint64_t m = (uint64_t)t0 + ((((uint64_t)(t1 - t0)) * f8 + 128u) >> 8); /* Q30 in [2^30, 2^31] */
    int s = (int)ip + q - 30;
    if (s > 31)
        return (uint64_t)1 << 62;
    if (s >= 0)
        return m << s;
    if (s < -33)
        return 0u;
    return (m + ((uint64_t)1 << (-s - 1))) >> (-s);
}

static uint32_t isqrt64(uint64_t v)
{
    uint64_t res = 0u, bit = (uint64_t)1 << 62;
    while (bit > v)
        bit >>= 2;
    while (bit) {
        if (v >= res + bit) {
            v -= res + bit;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    return (uint32_t)res;
}

/* sin(2 pi phase / 2^32) in Q30: 1024-entry table, linear interpolation (error < 5e-6). */
static int32_t fx_sin(uint32_t phase)
{
    uint32_t idx = phase >> (32 - EDS_FX_SIN_BITS);
    uint32_t fr = (phase >> (16 - EDS_FX_SIN_BITS)) & 0xFFFFu;
    int32_t a = eds_fx_sin_q30[idx], b = eds_fx_sin_q30[idx + 1u];
    return a + (int32_t)asr64((int64_t)(b - a) * (int64_t)fr, 16);
}

/* phase step per sample (2^32 = one turn) of a frequency in Q16.16 Hz (0..8 kHz) */
static uint32_t hz_to_phase(int32_t f_q16)
{
    return (uint32_t)(((uint64_t)(uint32_t)f_q16 * FX_PHASE_PER_HZ_Q16 + 0x80000000u) >> 32);
}

/* v rounded to 24 significant bits, to nearest, ties to even (float32 rounding of an integer) */
static uint64_t round_sig24(uint64_t v)
{
    int sh = 63 - clz64(v) - 23;
    uint64_t rem, half;
    if (sh <= 0)
        return v;
    rem = v & (((uint64_t)1 << sh) - 1u);
    half = (uint64_t)1 << (sh - 1);
    v -= rem;
    if (rem > half || (rem == half && ((v >> sh) & 1u)))
        v += (uint64_t)1 << sh;
    return v;
}

/*
 * Phase increment of the float path, (uint32)(f0 * float32(2^32 / fs) + 0.5f) in float32, for f0 in Q16.16,
 * emulated exactly in integers: float32(2^32 / 16000) = 8589935 / 32, so f0 * it = f0_q16 * 8589935 / 2^21.
 * Following the float path's rounding (increments are multiples of 4 or 8 at speech f0) keeps the two
 * phases together over long utterances.
 */
static uint32_t f0_to_increment(int32_t f0_q16)
{
    uint64_t v = round_sig24((uint64_t)(uint32_t)f0_q16 * 8589935u); /* f0 * INC_SCALE, float32, scaled 2^21 */
    v = round_sig24(v + ((uint64_t)1 << 20));                       /* + 0.5f */
    return (uint32_t)(v >> 21);                                      /* truncation */
}

/* gain curve in dB, Q16.16: sum_m c_m cos(pi m f / 8000) = sum_m c_m cos(2 pi m phase(f)) */
static int32_t fx_gain_db(const int32_t *coef_q16, uint32_t f_phase)
{
    int64_t sum = 0;
    uint32_t m;
    for (m = 0; m < EDS_N_GAIN; ++m)
        sum += (int64_t)coef_q16[m] * fx_sin(m * f_phase + 0x40000000u);
    return (int32_t)rshr64(sum, 30);
}

static int32_t db_to_log2(int32_t db_q16)
{
    return (int32_t)rshr64((int64_t)db_q16 * FX_LOG2_10_OVER_10_Q30, 30);
}

/* formant shape s(x) in Q30 for x = |f - F| / B in Q16.16 */
static uint32_t fx_shape(const int32_t *tab, uint32_t x_q16)
{
    int32_t u = 4 * fx_log2((uint64_t)x_q16 + 65536u, 16); /* log2(1 + x) / 0.25, Q16.16, < 2^21 */
    int32_t i0 = u >> 16, g;
    uint32_t fr = (uint32_t)u & 0xFFFFu;
    if (i0 >= EDS_N_KNOTS - 1)
        return 0u;
    g = tab[i0] + (int32_t)asr64((int64_t)(tab[i0 + 1] - tab[i0]) * (int64_t)fr, 16);
    if (g > FX_HZ(44)) /* e^-44 < 2^-63: nothing left in Q30 */
        return 0u;
    return (uint32_t)fx_exp2(-(int32_t)rshr64((int64_t)g * FX_LOG2E_Q30, 30), 30);
}

/* 2^46 / B (B in Q16.16, at least 1 Hz) so that x_q16 = |d_q16| * inv >> 30 */
static uint64_t inv_bandwidth(int32_t b_q16)
{
    if (b_q16 < 65536)
        b_q16 = 65536;
    return ((uint64_t)1 << 46) / (uint64_t)b_q16;
}

static uint32_t offset_in_bandwidths(int32_t f_q16, int32_t centre_q16, uint64_t inv_b)
{
    uint32_t d = (uint32_t)(f_q16 >= centre_q16 ? f_q16 - centre_q16 : centre_q16 - f_q16); /* < 2^30 */
    uint64_t x = ((uint64_t)d * inv_b) >> 30;
    return x > 0x7FFFFFFFu ? 0x7FFFFFFFu : (uint32_t)x;
}

/* voiced envelope sum_i A_i s_i((f - F_i) / B_i), Q30 */
static uint64_t fx_envelope(const eds_fx_weights *w, const int32_t *p, const uint64_t *inv_b, int32_t f_q16)
{
    uint64_t env = 0u;
    int i;
    for (i = 0; i < EDS_N_FORMANTS; ++i) {
        uint32_t s = fx_shape(w->shape[i], offset_in_bandwidths(f_q16, p[EDS_P_F1 + i], inv_b[i]));
        env += ((uint64_t)(uint32_t)p[EDS_P_A1 + i] * s) >> 16;
    }
    return env;
}

static void fx_inv_bandwidths(const eds_fx_weights *w, const int32_t *p, uint64_t *inv_b)
{
    int i;
    for (i = 0; i < EDS_N_FORMANTS; ++i) {
        int64_t b = (int64_t)w->bw0_hz[i] + asr64((int64_t)w->bw_slope[i] * p[EDS_P_F1 + i], 24);
        inv_b[i] = inv_bandwidth(b > 0x7FFFFFFF ? 0x7FFFFFFF : (int32_t)b);
    }
}

/* ---- loading ------------------------------------------------------------------------------------------- */

int eds_fx_weights_load(eds_fx_weights *w, const void *data, size_t n_bytes, eds_load_info *info)
{
    eds_file_view view;
    uint32_t i;
    int st;
    if (!w)
        return EDS_E_NULL;
    st = eds_file_open(data, n_bytes, info, &view);
    if (st != EDS_OK)
        return st;
    for (i = 0; i < EDS_N_PARAMS; ++i) {
        w->lo[i] = eds_f32bits_to_fixed(eds_payload_bits(&view, EDS_OFF_LO + i), 16);
        w->hi[i] = eds_f32bits_to_fixed(eds_payload_bits(&view, EDS_OFF_HI + i), 16);
    }
    for (i = 0; i < EDS_N_SHAPES * EDS_N_KNOTS; ++i)
        w->shape[i / EDS_N_KNOTS][i % EDS_N_KNOTS] = eds_f32bits_to_fixed(eds_payload_bits(&view, EDS_OFF_SHAPE + i), 16);
    for (i = 0; i < EDS_N_FORMANTS; ++i) {
        w->bw0_hz[i] = eds_f32bits_to_fixed(eds_payload_bits(&view, EDS_OFF_BW0 + i), 16);
        w->bw_slope[i] = eds_f32bits_to_fixed(eds_payload_bits(&view, EDS_OFF_BWS + i), 24);
    }
    for (i = 0; i < EDS_N_GAIN; ++i)
        w->gain_v_db[i] = eds_f32bits_to_fixed(eds_payload_bits(&view, EDS_OFF_GV + i), 16);
    {
        int32_t gain_n[EDS_N_GAIN];
        for (i = 0; i < EDS_N_GAIN; ++i)
            gain_n[i] = eds_f32bits_to_fixed(eds_payload_bits(&view, EDS_OFF_GN + i), 16);
        for (i = 0; i < EDS_NOISE_BINS; ++i) {
            w->gn_log2_noise[i] = db_to_log2(fx_gain_db(gain_n, hz_to_phase((int32_t)(i * 4096000u))));
            w->bg_noise_q40[i] = eds_f32bits_to_u64_fixed(eds_payload_bits(&view, EDS_OFF_BG + eds_bg_index[i]), 40);
        }
    }
    w->n_harmonics = view.n_harmonics;
    return EDS_OK;
}

uint32_t eds_fx_clamp_params(const eds_fx_weights *w, const int32_t in[EDS_N_PARAMS], int32_t out[EDS_N_PARAMS])
{
    uint32_t n_bad = 0u;
    int i;
    for (i = 0; i < EDS_N_PARAMS; ++i) {
        int32_t v = in[i];
        if (v < w->lo[i]) {
            v = w->lo[i];
            ++n_bad;
        } else if (v > w->hi[i]) {
            v = w->hi[i];
            ++n_bad;
        }
        out[i] = v;
    }
    return n_bad;
}

/* ---- per-frame model --------------------------------------------------------------------------------- */

uint32_t eds_fx_harmonic_amplitudes(const eds_fx_weights *w, const int32_t p[EDS_N_PARAMS],
                                    int32_t amp[EDS_MAX_HARMONICS])
{
    const int32_t f0 = p[EDS_P_F0];
    uint64_t inv_b[EDS_N_FORMANTS];
    uint32_t k, n_sat = 0u;
    int32_t base, fh = 0;
    for (k = 0; k < w->n_harmonics; ++k)
        amp[k] = 0;
    if (p[EDS_P_ALPHA] <= 0 || f0 <= 0)
        return 0u;
    fx_inv_bandwidths(w, p, inv_b);
    /* log2(amp^2) = log2(4 L alpha f0 / fs) + log2(Gv) + log2(Env) + log2(taper) */
    base = 2 * 65536 + db_to_log2(p[EDS_P_LOUD])
         + fx_log2((uint64_t)(uint32_t)p[EDS_P_ALPHA] * (uint32_t)f0, 32) - FX_LOG2_16000_Q16;
    for (k = 0; k < w->n_harmonics; ++k) {
        uint64_t env, taper_q30 = (uint64_t)1 << 30;
        int32_t lg;
        uint32_t a;
        fh += f0;
        if (fh >= FX_HZ(8000))
            break;
        if (fh > FX_HZ(7600)) { /* raised-cosine taper: 0.5 + 0.5 cos(pi x), x = (f - 7600) / 400 */
            uint32_t x_q16 = (uint32_t)(fh - FX_HZ(7600)) / 400u;
            taper_q30 = (uint64_t)(((int64_t)1 << 30) + fx_sin((x_q16 << 15) + 0x40000000u)) >> 1;
            if (taper_q30 == 0u)
                continue;
        }
        env = fx_envelope(w, p, inv_b, fh);
        if (env == 0u)
            continue;
        lg = base + db_to_log2(fx_gain_db(w->gain_v_db, hz_to_phase(fh))) + fx_log2(env, 30) + fx_log2(taper_q30, 30);
        a = isqrt64(fx_exp2(lg, 40)); /* Q20 */
        if (a > (uint32_t)FX_AMP_MAX) {
            a = (uint32_t)FX_AMP_MAX;
            ++n_sat;
        }
        amp[k] = (int32_t)a;
    }
    return n_sat;
}

uint32_t eds_fx_noise_gain(const eds_fx_weights *w, const int32_t p[EDS_N_PARAMS], int include_background,
                           int32_t gain[EDS_NOISE_BINS])
{
    uint64_t inv_b[EDS_N_FORMANTS], inv_bu;
    const int32_t one_minus_alpha = 65536 - p[EDS_P_ALPHA];
    int32_t base;
    uint32_t b, n_sat = 0u;
    fx_inv_bandwidths(w, p, inv_b);
    inv_bu = inv_bandwidth(p[EDS_P_BU]);
    base = db_to_log2(p[EDS_P_LOUD]) + (one_minus_alpha > 0 ? fx_log2((uint64_t)one_minus_alpha, 16) : FX_LOG2_ZERO);
    for (b = 0; b < EDS_NOISE_BINS; ++b) {
        const int32_t f = (int32_t)(b * 4096000u); /* b * 62.5 Hz in Q16.16 */
        uint64_t pw = 0u, e = 0u;
        uint32_t g;
        if (one_minus_alpha > 0) {
            uint32_t su = fx_shape(w->shape[EDS_N_FORMANTS], offset_in_bandwidths(f, p[EDS_P_FU], inv_bu));
            e = fx_envelope(w, p, inv_b, f) + (((uint64_t)(uint32_t)p[EDS_P_AU] * su) >> 16);
        }
        if (e != 0u)
            pw = fx_exp2(base + w->gn_log2_noise[b] + fx_log2(e, 30), 40);
        if (include_background)
            pw += w->bg_noise_q40[b]; /* both < 2^62 */
        g = isqrt64(pw);
        if (g > (uint32_t)FX_GAIN_MAX) {
            g = (uint32_t)FX_GAIN_MAX;
            ++n_sat;
        }
        gain[b] = (int32_t)g;
    }
    return n_sat;
}

/* ---- fixed-point FFT ----------------------------------------------------------------------------------- */

/*
 * In-place 128-point complex FFT (interleaved), radix 2, each stage halved with rounding, so the output is
 * the transform / 128 and no value grows beyond the largest input magnitude. sign -1 forward, +1 inverse.
 */
static void fx_fft128_scaled(int32_t *z, int sign)
{
    uint32_t i, len, start, k;
    for (i = 0; i < 128u; ++i) {
        uint32_t j = eds_bitrev7[i];
        if (i < j) {
            int32_t tr = z[2 * i], ti = z[2 * i + 1];
            z[2 * i] = z[2 * j];
            z[2 * i + 1] = z[2 * j + 1];
            z[2 * j] = tr;
            z[2 * j + 1] = ti;
        }
    }
    for (len = 2; len <= 128u; len <<= 1) {
        const uint32_t half = len >> 1, step = 128u / len;
        for (start = 0; start < 128u; start += len) {
            for (k = 0; k < half; ++k) {
                const int64_t wr = eds_fx_cos128_q30[k * step];
                const int64_t wi = sign < 0 ? -(int64_t)eds_fx_sin128_q30[k * step] : eds_fx_sin128_q30[k * step];
                int32_t *a = z + 2 * (start + k), *bb = z + 2 * (start + k + half);
                const int64_t tr = rshr64(bb[0] * wr - bb[1] * wi, 30);
                const int64_t ti = rshr64(bb[0] * wi + bb[1] * wr, 30);
                const int64_t ar = a[0], ai = a[1];
                a[0] = (int32_t)rshr64(ar + tr, 1);
                a[1] = (int32_t)rshr64(ai + ti, 1);
                bb[0] = (int32_t)rshr64(ar - tr, 1);
                bb[1] = (int32_t)rshr64(ai - ti, 1);
            }
        }
    }
}

/* 256 real samples (Q) in z (overwritten) -> spec = X / 256 (Q), 129 complex bins */
static void fx_rfft256_scaled(int32_t *z, int32_t *spec)
{
    int k;
    fx_fft128_scaled(z, -1); /* Z / 128 */
    for (k = 0; k <= 128; ++k) {
        const int a = k & 127, c = (128 - k) & 127;
        const int64_t sr = (int64_t)z[2 * a] + z[2 * c], si = (int64_t)z[2 * a + 1] - z[2 * c + 1]; /* 2E */
        const int64_t orr = (int64_t)z[2 * a + 1] + z[2 * c + 1], oi = (int64_t)z[2 * c] - z[2 * a];  /* 2O */
        const int64_t wr = eds_fx_cos256_q30[k], wi = -(int64_t)eds_fx_sin256_q30[k];
        /* X / 256 = (2E + W 2O) / 4 */
        spec[2 * k] = (int32_t)rshr64(sr * ((int64_t)1 << 30) + wr * orr - wi * oi, 32);
        spec[2 * k + 1] = (int32_t)rshr64(si * ((int64_t)1 << 30) + wr * oi + wi * orr, 32);
    }
}

/* Y (129 bins, Q25, |Y| < 16) -> 256 real samples sum_k Y_k e^{+} (the unnormalized inverse) in Q18 */
static void fx_irfft256(const int32_t *spec, int32_t *x)
{
    int k;
    for (k = 0; k < 128; ++k) {
        const int c = 128 - k;
        const int64_t yr = spec[2 * k], yi = k == 0 ? 0 : spec[2 * k + 1];
        const int64_t cr = spec[2 * c], ci = c == 128 ? 0 : -(int64_t)spec[2 * c + 1];
        const int64_t sr = yr + cr, si = yi + ci, dr = yr - cr, di = yi - ci;
        const int64_t wr = eds_fx_cos256_q30[k], wi = eds_fx_sin256_q30[k]; /* W^-k */
        const int64_t orr = rshr64(dr * wr - di * wi, 30), oi = rshr64(dr * wi + di * wr, 30);
        x[2 * k] = (int32_t)(sr - oi); /* S + i O: |.| <= 4 max|Y| < 2^31 */
        x[2 * k + 1] = (int32_t)(si + orr);
    }
    fx_fft128_scaled(x, +1); /* Q25 / 128 = Q18 */
}

/* ---- streaming --------------------------------------------------------------------------------------- */

void eds_fx_state_init(eds_fx_state *s, const eds_fx_weights *w, uint32_t seed, int include_background)
{
    s->w = w;
    s->seed = seed;
    s->include_background = include_background ? 1 : 0;
    eds_fx_state_reset(s);
}

void eds_fx_state_reset(eds_fx_state *s)
{
    s->have_prev = 0;
    s->phase = 0u;
    s->frame_index = 0u;
    s->n_clamped = 0u;
    s->n_saturated = 0u;
    memset(s->prev, 0, sizeof s->prev);
    memset(s->prev_amp, 0, sizeof s->prev_amp);
    memset(s->tail, 0, sizeof s->tail);
}

static uint32_t sat_add(uint32_t a, uint32_t b)
{
    return a + b < a ? 0xFFFFFFFFu : a + b;
}

uint32_t eds_fx_render_frame(eds_fx_state *s, const int32_t params_q16[EDS_N_PARAMS], int16_t out[EDS_HOP])
{
    const eds_fx_weights *w = s->w;
    int32_t p[EDS_N_PARAMS];
    int32_t *const amp = s->amp, *const prev_amp = s->prev_amp;
    int32_t *const seg = s->work, *const spec = s->work + EDS_NOISE_FFT;
    int64_t mix[EDS_HOP]; /* Q50 harmonic sum */
    int32_t f0_prev, f0_step;
    uint32_t n_bad, n_sat, acc, k, n_active = 0u;
    int i;

    n_bad = eds_fx_clamp_params(w, params_q16, p);
    s->n_clamped = sat_add(s->n_clamped, n_bad);
    n_sat = eds_fx_harmonic_amplitudes(w, p, amp);
    n_sat += eds_fx_noise_gain(w, p, s->include_background, s->gain);
    f0_prev = s->have_prev ? s->prev[EDS_P_F0] : p[EDS_P_F0];

    /* phase: f0 interpolated per sample, increment as the float path rounds f0 * 2^32 / fs */
    f0_step = p[EDS_P_F0] - f0_prev;
    acc = s->phase;
    for (i = 0; i < EDS_HOP; ++i) {
        const int32_t f0s = f0_prev + (int32_t)asr64((int64_t)f0_step * i, 7);
        s->acc[i] = acc;
        acc += f0_to_increment(f0s);
    }
    s->phase = acc;

    /* harmonics: |amp| < 2^22 (Q20), |sin| <= 2^30: each product < 2^52, the sum of 256 < 2^60 */
    for (k = 0; k < w->n_harmonics; ++k)
        if (amp[k] != 0 || prev_amp[k] != 0)
            n_active = k + 1u;
    for (i = 0; i < EDS_HOP; ++i)
        mix[i] = 0;
    for (k = 0; k < n_active; ++k) {
        const int32_t a0 = prev_amp[k], da = amp[k] - prev_amp[k];
        const uint32_t mult = k + 1u;
        if (a0 == 0 && amp[k] == 0)
            continue;
        for (i = 0; i < EDS_HOP; ++i) {
            const int32_t a = a0 + (int32_t)asr64((int64_t)da * i, 7);
            mix[i] += (int64_t)a * fx_sin(s->acc[i] * mult);
        }
    }

    /* noise: Q24 white noise -> X/256 (Q24) -> * gain (Q20) -> Q25 -> inverse -> Q18 */
    for (k = 0; k < EDS_NOISE_FFT; ++k) {
        uint32_t h = eds_lowbias32((s->frame_index * (uint32_t)EDS_NOISE_FFT + k) * 0x9E3779B9u + s->seed);
        int64_t u = (int64_t)((h >> 8) << 1) - (int64_t)(1u << 24); /* (2u - 1) in Q24 */
        seg[k] = (int32_t)rshr64(u * FX_SQRT3_Q30, 30);
    }
    fx_rfft256_scaled(seg, spec);
    for (k = 0; k < EDS_NOISE_BINS; ++k) {
        spec[2 * k] = (int32_t)rshr64((int64_t)spec[2 * k] * s->gain[k], 19);
        spec[2 * k + 1] = (int32_t)rshr64((int64_t)spec[2 * k + 1] * s->gain[k], 19);
    }
    fx_irfft256(spec, seg);
    for (k = 0; k < EDS_NOISE_FFT; ++k)
        seg[k] = (int32_t)rshr64((int64_t)seg[k] * eds_fx_sqrt_hann_q30[k], 30);

    /* mix in Q18, round to Q15, saturate */
    for (i = 0; i < EDS_HOP; ++i) {
        int64_t v = rshr64(mix[i], 32) + s->tail[i] + seg[i];
        v = rshr64(v, 3);
        if (v > 32767) {
            v = 32767;
            ++n_sat;
        } else if (v < -32768) {
            v = -32768;
            ++n_sat;
        }
        out[i] = (int16_t)v;
        s->tail[i] = seg[EDS_HOP + i];
    }
    s->n_saturated = sat_add(s->n_saturated, n_sat);

    memcpy(s->prev, p, sizeof s->prev);
    memcpy(prev_amp, amp, w->n_harmonics * sizeof(int32_t));
    s->have_prev = 1;
    s->frame_index += 1u;
    return n_bad;
}
