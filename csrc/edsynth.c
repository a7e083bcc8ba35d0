/*
 * edsynth.c -- float32 synthesizer: spectrogram frames (PyTorch synth, deterministic mode) and audio
 * frames (numpy FrameRenderer), C99 + libm, no allocation.
 *
 * The audio path follows edgensd/speech/render.py formula by formula and in the same float32 order (the
 * comments quote the numpy lines), so the two agree to about 1e-6: the phase increments and the noise are
 * bit-identical; exp, log2, sin and the gain curves' cosines come from the float32 kernels below (accurate to
 * about 1e-7, as numpy's own SIMD kernels are) and the harmonic sum is sequential where numpy's is pairwise.
 * The spectrogram path uses the same pieces with synth.py's formula; it agrees with torch to about 1e-6
 * normalized dB. Hot loops run over blocks of EDS_BLOCK frequencies and compile to SIMD code at -O2.
 */
#include "edsynth_internal.h"

#ifndef EDSYNTH_FIXED_ONLY

#include <math.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define PI_F ((float)3.141592653589793)
#define INC_SCALE ((float)(4294967296.0 / 16000.0))            /* _INC_SCALE */
#define SQRT3_F ((float)1.7320508075688772)
#define BIN_HZ_F ((float)(16000.0 / 511.0))
#define GAIN_ARG_F ((float)(3.141592653589793 / 8000.0))       /* np.float32(np.pi / (SAMPLE_RATE / 2)) */
#define TAPER_START_F 7600.0f
#define TAPER_END_F 8000.0f
#define DB_MIN_F (-50.0f)
#define DB_MAX_F 22.5f
#define EDS_BLOCK 16          /* frequencies per envelope block */
#define EDS_G_CUT 87.0f       /* -ln s beyond which a shape is taken as 0 (knots clamped to it at load) */
#define LOG2E_F 1.44269504f

/* ---- loading ---------------------------------------------------------------------------------------- */

static float bits_to_float(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static void gain_db_block(const float *coefs, const float *f_hz, float *out);
static float db_to_power(float db);

/* 10^(G(f)/10) for a gain curve at n frequencies (n a multiple of EDS_BLOCK) */
static void gain_curve(const float *coefs, const float *f_hz, int n, float *out)
{
    int k;
    for (k = 0; k < n; k += EDS_BLOCK)
        gain_db_block(coefs, f_hz + k, out + k);
    for (k = 0; k < n; ++k)
        out[k] = db_to_power(out[k]);
}

int eds_weights_load(eds_weights *w, const void *data, size_t n_bytes, eds_load_info *info)
{
    eds_file_view view;
    float *dst;
    uint32_t i;
    int st, b;
    if (!w)
        return EDS_E_NULL;
    st = eds_file_open(data, n_bytes, info, &view);
    if (st != EDS_OK)
        return st;
    for (i = 0; i < EDS_N_PARAMS; ++i) {
        w->lo[i] = bits_to_float(eds_payload_bits(&view, EDS_OFF_LO + i));
        w->hi[i] = bits_to_float(eds_payload_bits(&view, EDS_OFF_HI + i));
    }
    dst = &w->shape[0][0];
    for (i = 0; i < EDS_N_SHAPES * EDS_N_KNOTS; ++i)
        dst[i] = bits_to_float(eds_payload_bits(&view, EDS_OFF_SHAPE + i));
    for (i = 0; i < EDS_N_FORMANTS; ++i) {
        w->bw0_hz[i] = bits_to_float(eds_payload_bits(&view, EDS_OFF_BW0 + i));
        w->bw_slope[i] = bits_to_float(eds_payload_bits(&view, EDS_OFF_BWS + i));
    }
    for (i = 0; i < EDS_N_GAIN; ++i) {
        w->gain_v_db[i] = bits_to_float(eds_payload_bits(&view, EDS_OFF_GV + i));
        w->gain_n_db[i] = bits_to_float(eds_payload_bits(&view, EDS_OFF_GN + i));
    }
    for (i = 0; i < EDS_N_BINS; ++i)
        w->background[i] = bits_to_float(eds_payload_bits(&view, EDS_OFF_BG + i));
    w->n_harmonics = view.n_harmonics;
    memcpy(w->voice_name, view.voice_name, sizeof w->voice_name);
    /* derived: gain curves on the fixed frequency grids, background picked for the noise bins */
    gain_curve(w->gain_n_db, eds_bin_hz, EDS_N_BINS, w->gn_bin);
    gain_curve(w->gain_n_db, eds_noise_hz, EDS_NOISE_BINS_PADDED, w->gn_noise);
    for (b = EDS_NOISE_BINS; b < EDS_NOISE_BINS_PADDED; ++b)
        w->gn_noise[b] = 0.0f;
    for (b = 0; b < EDS_NOISE_BINS; ++b)
        w->bg_noise[b] = w->background[eds_bg_index[b]];
    for (i = 0; i < EDS_N_SHAPES; ++i) { /* knots as -g log2(e) (g clamped at EDS_G_CUT) and steps */
        for (b = 0; b < EDS_N_KNOTS; ++b) {
            const float g0 = w->shape[i][b] < EDS_G_CUT ? w->shape[i][b] : EDS_G_CUT;
            const float g1 = b + 1 < EDS_N_KNOTS && w->shape[i][b + 1] < EDS_G_CUT ? w->shape[i][b + 1] : EDS_G_CUT;
            w->shape_z0[i][b] = -g0 * LOG2E_F;
            w->shape_dz[i][b] = -(g1 - g0) * LOG2E_F;
        }
        w->shape_z0[i][EDS_N_KNOTS] = -EDS_G_CUT * LOG2E_F; /* u >= 32: 0 */
        w->shape_dz[i][EDS_N_KNOTS] = 0.0f;
    }
    return EDS_OK;
}

/* ---- parameters ------------------------------------------------------------------------------------- */

uint32_t eds_clamp_params(const eds_weights *w, const float in[EDS_N_PARAMS], float out[EDS_N_PARAMS])
{
    uint32_t n_bad = 0;
    int i;
    for (i = 0; i < EDS_N_PARAMS; ++i) {
        float v = in[i];
        if (isnan(v)) {
            v = w->lo[i];
            ++n_bad;
        } else if (v < w->lo[i]) {
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

void eds_fx_params_from_float(const float in[EDS_N_PARAMS], int32_t out[EDS_N_PARAMS])
{
    int i;
    for (i = 0; i < EDS_N_PARAMS; ++i) {
        uint32_t bits;
        memcpy(&bits, &in[i], sizeof bits);
        /* NaN below every bound (clamped to lo and counted, as the float path does); the rest rounded and
         * saturated exactly as the synth file's values are */
        out[i] = isnan(in[i]) ? INT32_MIN : eds_f32bits_to_fixed(bits, 16);
    }
}

/* ---- float32 kernels ------------------------------------------------------------------------------------
 * Replacements for libm in the per-frame loops, accurate to about 1e-7 (the numpy reference's own SIMD
 * kernels differ from libm by as much). They use only + - * / and integer bit operations and no branches,
 * so the fixed-length block loops below compile to SIMD code at -O2 and need no libm on the target.
 */


static float f32_from_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* log2(y), y a positive normal float: exponent + 2/ln2 atanh(t), t = (m - 1) / (m + 1), the mantissa m folded
 * into [0.707, 1.414) with integer operations, so |t| <= 0.172; odd terms to t^9 (truncation < 1e-9) */
static inline float log2_pos(float y)
{
    const uint32_t bits = f32_bits(y), man = bits & 0x7FFFFFu;
    const uint32_t fold = man >= 0x3504F3u ? 1u : 0u; /* mantissa >= sqrt(2): halve it, exponent + 1 */
    const float m = f32_from_bits(man | (0x3F800000u - (fold << 23)));
    const float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
    return (float)((int)(bits >> 23) - 127 + (int)fold)
           + t * (2.88539004f + t2 * (0.961796701f + t2 * (0.577078044f + t2 * (0.412198573f + t2 * 0.320598900f))));
}

/* 2^z for z <= 0; exactly 0 below about -100 (far under every floor of the model; no subnormals):
 * z = n + r, |r| <= 1/2, e^(r ln2) to r^7 (truncation < 6e-9) */
static inline float exp2_le0(float z)
{
    const int n = (int)(z - 0.5f); /* round(z) for z <= 0 */
    const float r = (z - (float)n) * 0.693147182f;
    const float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f + r * (0.00833333377f
                    + r * (0.00138888892f + r * 0.000198412701f))))));
    const uint32_t scale = n < -100 ? 0u : (uint32_t)(n + 127) << 23;
    return p * f32_from_bits(scale);
}

/* 10^(db / 10) for the model's dB range (|db| < 380) */
static float db_to_power(float db)
{
    const float z = db * 0.332192808f; /* log2(10) / 10 */
    return z <= 0.0f ? exp2_le0(z) : 1.0f / exp2_le0(-z);
}

/* sin(2 pi phase / 2^32) = -sin(pi y), y = phase / 2^31 - 1 in [-1, 1): odd Taylor series of sin(pi y) to
 * y^19 (truncation < 6e-10; absolute rounding error about 1e-7) */
static inline float sin_phase(uint32_t phase)
{
    const float y = (float)(phase >> 8) * (1.0f / 8388608.0f) - 1.0f, y2 = y * y;
    return -y * (3.14159274f + y2 * (-5.16771269f + y2 * (2.55016398f + y2 * (-0.599264503f + y2 * (0.0821458846f
                 + y2 * (-0.00737043098f + y2 * (0.000466302794f + y2 * (-2.19153535e-05f + y2 * (7.95205381e-07f
                 + y2 * -2.29484289e-08f)))))))));
}

/* ---- model pieces (dsp.py) ------------------------------------------------------------------------------ */

/*
 * env[b] = env[b] + amp * s((f[b] - centre) / bw) for n frequencies (n a multiple of EDS_BLOCK):
 * dsp.eval_shape, s(x) = exp(-g(u)), u = log2(1 + |x|) / 0.25, g linear between knots, 0 from the last knot
 * on. `w->shape_z0` / `w->shape_dz` hold -g log2(e) at the knots and its step to the next knot, with cut-off
 * entries for u >= 32 (giving 0). Three passes over all n values: knot index and fraction (SIMD), the table
 * lookup (scalar gather), exp2 and accumulation (SIMD). `work` and `iwork` are n values of scratch.
 */
static void add_shape(const float *restrict f_hz, int n, float centre, float bw, float amp,
                      const float *restrict z0, const float *restrict dz, float *restrict env,
                      float *restrict work, int32_t *restrict iwork)
{
    const float inv_bw = 1.0f / bw; /* x = (f - F) * (1 / B): within an ulp of numpy's (f - F) / B */
    int k, b;
    for (k = 0; k < n; k += EDS_BLOCK)
        for (b = 0; b < EDS_BLOCK; ++b) {
            const float u = log2_pos(1.0f + fabsf((f_hz[k + b] - centre) * inv_bw)) * 4.0f;
            const int32_t i0 = (int32_t)u; /* floor: u >= 0 */
            work[k + b] = u - (float)i0;
            iwork[k + b] = i0 >= EDS_N_KNOTS - 1 ? EDS_N_KNOTS : i0;
        }
    for (k = 0; k < n; ++k)
        work[k] = z0[iwork[k]] + dz[iwork[k]] * work[k];
    for (k = 0; k < n; k += EDS_BLOCK)
        for (b = 0; b < EDS_BLOCK; ++b)
            env[k + b] = env[k + b] + amp * exp2_le0(work[k + b]);
}

/* FrameRenderer.envelope at n frequencies (n a multiple of EDS_BLOCK): env = sum_i A_i s_i((f - F_i) / B_i)
 * accumulated from 0 in formant order; formants with A_i = 0 add exactly nothing and are skipped. */
static void envelope(const eds_weights *w, const float *p, const float *bw, const float *f_hz, int n, float *env,
                     float *work, int32_t *iwork)
{
    int i, b;
    for (b = 0; b < n; ++b)
        env[b] = 0.0f;
    for (i = 0; i < EDS_N_FORMANTS; ++i)
        if (p[EDS_P_A1 + i] != 0.0f)
            add_shape(f_hz, n, p[EDS_P_F1 + i], bw[i], p[EDS_P_A1 + i], w->shape_z0[i], w->shape_dz[i], env, work,
                      iwork);
}

/* noise-source spectral envelope Gn(f) (Env(f) + Au su(f)) on a frequency grid, gn the gain curve there;
 * su and work: n floats of scratch each */
static void noise_envelope(const eds_weights *w, const float *p, const float *bw, const float *f_hz, int n,
                           const float *gn, float *en, float *su, float *work, int32_t *iwork)
{
    int b;
    envelope(w, p, bw, f_hz, n, en, work, iwork);
    for (b = 0; b < n; ++b)
        su[b] = 0.0f;
    add_shape(f_hz, n, p[EDS_P_FU], p[EDS_P_BU], p[EDS_P_AU], w->shape_z0[EDS_N_FORMANTS],
              w->shape_dz[EDS_N_FORMANTS], su, work, iwork);
    for (b = 0; b < n; ++b)
        en[b] = gn[b] * (en[b] + su[b]);
}

/* numpy's pairwise order for the gain sums needs 8 <= EDS_N_GAIN <= 128 and a multiple of 8 */
typedef char eds_gain_terms_check[(EDS_N_GAIN % 8 == 0 && EDS_N_GAIN >= 8 && EDS_N_GAIN <= 128) ? 1 : -1];

/*
 * dsp.eval_gain_db at EDS_BLOCK frequencies: sum_m c_m cos(m theta), theta = pi f / 8000, cos(m theta) by
 * rotation (error growing like m eps, about 2e-6 at m = 23), summed in numpy's pairwise order (8 partial
 * sums, then ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))).
 */
static void gain_db_block(const float *coefs, const float *f_hz, float *out)
{
    float c[EDS_BLOCK], s[EDS_BLOCK], c1[EDS_BLOCK], s1[EDS_BLOCK], r[8][EDS_BLOCK];
    int b, m;
    for (b = 0; b < EDS_BLOCK; ++b) {
        const float theta = GAIN_ARG_F * f_hz[b];
        c1[b] = cosf(theta);
        s1[b] = sinf(theta);
        c[b] = 1.0f;
        s[b] = 0.0f;
    }
    for (m = 0; m < EDS_N_GAIN; ++m) {
        float *const acc = r[m % 8];
        const float cm = coefs[m];
        if (m < 8)
            for (b = 0; b < EDS_BLOCK; ++b)
                acc[b] = cm * c[b];
        else
            for (b = 0; b < EDS_BLOCK; ++b)
                acc[b] = acc[b] + cm * c[b];
        for (b = 0; b < EDS_BLOCK; ++b) {
            const float cn = c[b] * c1[b] - s[b] * s1[b];
            s[b] = s[b] * c1[b] + c[b] * s1[b];
            c[b] = cn;
        }
    }
    for (b = 0; b < EDS_BLOCK; ++b)
        out[b] = 0.0f + (((r[0][b] + r[1][b]) + (r[2][b] + r[3][b])) + ((r[4][b] + r[5][b]) + (r[6][b] + r[7][b])));
}

static void bandwidths(const eds_weights *w, const float *p, float *bw)
{
    int i;
    for (i = 0; i < EDS_N_FORMANTS; ++i)
        bw[i] = w->bw0_hz[i] + w->bw_slope[i] * p[EDS_P_F1 + i];
}

/* dsp.harmonic_taper: 1 below 7.6 kHz, raised cosine to 0 at 8 kHz. */
static float taper_at(float f_hz)
{
    float x = (f_hz - TAPER_START_F) / (TAPER_END_F - TAPER_START_F);
    if (x <= 0.0f)
        return 1.0f; /* 0.5 + 0.5 * cos(0) */
    if (x > 1.0f)
        x = 1.0f;
    return 0.5f + 0.5f * cosf(PI_F * x);
}

/* harmonic frequencies below 8 kHz (the taper is 0 from there on), padded with 0 to whole blocks */
static int harmonic_freqs(const eds_weights *w, float f0, float *fh)
{
    int k, n = 0;
    for (k = 0; k < (int)w->n_harmonics; ++k) {
        const float f = f0 * (float)(k + 1);
        if (!(f < TAPER_END_F))
            break;
        fh[n++] = f;
    }
    k = n;
    do /* pad to a whole block (at least one entry, so the block is never left unset) */
        fh[k++] = 0.0f;
    while (k % EDS_BLOCK != 0);
    return n;
}

/* harmonic power pw_k = scale * Gv(f_k) * Env(f_k) * taper(f_k) at n harmonics (env: the envelope there;
 * fh padded to whole blocks) */
static void harmonic_power(const eds_weights *w, float scale, const float *fh, const float *env, int n, float *pw)
{
    float gain[EDS_BLOCK];
    int k, j;
    for (k = 0; k < n; k += EDS_BLOCK) {
        gain_db_block(w->gain_v_db, fh + k, gain);
        for (j = 0; j < EDS_BLOCK && k + j < n; ++j)
            pw[k + j] = scale * db_to_power(gain[j]) * env[k + j] * taper_at(fh[k + j]);
    }
}

static void harmonic_amplitudes_work(const eds_weights *w, const float *p, float *amp, float *fh, float *env,
                                     float *work, int32_t *iwork)
{
    float bw[EDS_N_FORMANTS], loud, scale;
    int k, n;
    bandwidths(w, p, bw);
    loud = db_to_power(p[EDS_P_LOUD]);
    /* pw = loud * alpha * (f0 / fs) * gv * env * taper; amp = 2 sqrt(max(pw, 0)) */
    scale = loud * p[EDS_P_ALPHA] * (p[EDS_P_F0] / (float)EDS_SAMPLE_RATE);
    n = harmonic_freqs(w, p[EDS_P_F0], fh);
    envelope(w, p, bw, fh, (n + EDS_BLOCK - 1) / EDS_BLOCK * EDS_BLOCK, env, work, iwork);
    harmonic_power(w, scale, fh, env, n, amp);
    for (k = 0; k < n; ++k)
        amp[k] = 2.0f * sqrtf(amp[k] > 0.0f ? amp[k] : 0.0f);
    for (k = n; k < (int)w->n_harmonics; ++k)
        amp[k] = 0.0f; /* from 8 kHz on: taper 0, pw = 0 exactly */
}

static void noise_gain_work(const eds_weights *w, const float *p, int include_background, float *gain, float *su,
                            float *work, int32_t *iwork)
{
    float bw[EDS_N_FORMANTS], scale;
    int b;
    bandwidths(w, p, bw);
    /* pw = loud * (1 - alpha) * en (+ background); gain = sqrt(max(pw, 0)) */
    scale = db_to_power(p[EDS_P_LOUD]) * (1.0f - p[EDS_P_ALPHA]);
    noise_envelope(w, p, bw, eds_noise_hz, EDS_NOISE_BINS_PADDED, w->gn_noise, gain, su, work, iwork);
    for (b = 0; b < EDS_NOISE_BINS; ++b) {
        float pw = scale * gain[b];
        if (include_background)
            pw = pw + w->bg_noise[b];
        gain[b] = sqrtf(pw > 0.0f ? pw : 0.0f);
    }
}

void eds_harmonic_amplitudes(const eds_weights *w, const float p[EDS_N_PARAMS], float amp[EDS_MAX_HARMONICS])
{
    float fh[EDS_MAX_HARMONICS + EDS_BLOCK], env[EDS_MAX_HARMONICS + EDS_BLOCK], work[EDS_MAX_HARMONICS + EDS_BLOCK];
    int32_t iwork[EDS_MAX_HARMONICS + EDS_BLOCK];
    harmonic_amplitudes_work(w, p, amp, fh, env, work, iwork);
}

void eds_noise_gain(const eds_weights *w, const float p[EDS_N_PARAMS], int include_background,
                    float gain[EDS_NOISE_BINS])
{
    float g[EDS_NOISE_BINS_PADDED], su[EDS_NOISE_BINS_PADDED], work[EDS_NOISE_BINS_PADDED];
    int32_t iwork[EDS_NOISE_BINS_PADDED];
    noise_gain_work(w, p, include_background, g, su, work, iwork);
    memcpy(gain, g, EDS_NOISE_BINS * sizeof(float));
}

/* ---- spectrogram frame (synth.py Synthesizer.forward, deterministic) ----------------------------------- */

uint32_t eds_spectrogram_frame(const eds_weights *w, const float params[EDS_N_PARAMS],
                               float power[EDS_N_BINS], float norm[EDS_N_BINS])
{
    float p[EDS_N_PARAMS], bw[EDS_N_FORMANTS], pv[EDS_N_BINS], en[EDS_N_BINS], su[EDS_N_BINS], work[EDS_N_BINS];
    int32_t iwork[EDS_N_BINS];
    float fh[EDS_MAX_HARMONICS + EDS_BLOCK], hp[EDS_MAX_HARMONICS + EDS_BLOCK];
    float f0, alpha, loud;
    uint32_t n_bad;
    int b, k, n;
    n_bad = eds_clamp_params(w, params, p);
    bandwidths(w, p, bw);
    f0 = p[EDS_P_F0];
    alpha = p[EDS_P_ALPHA];
    loud = db_to_power(p[EDS_P_LOUD]);
    for (b = 0; b < EDS_N_BINS; ++b)
        pv[b] = 0.0f;
    /* harmonic part: hp = alpha (f0 / fs) Gv Env taper, each harmonic spread over the bins within 4 bins of
     * it by the window response (the harmonics torch gathers around every bin are exactly these) */
    n = harmonic_freqs(w, f0, fh);
    envelope(w, p, bw, fh, (n + EDS_BLOCK - 1) / EDS_BLOCK * EDS_BLOCK, en, work, iwork);
    harmonic_power(w, alpha * (f0 / (float)EDS_SAMPLE_RATE), fh, en, n, hp);
    for (k = 0; k < n; ++k) {
        const int centre = (int)(fh[k] / BIN_HZ_F);
        const int b_lo = centre - 4 < 0 ? 0 : centre - 4;
        const int b_hi = centre + 5 > EDS_N_BINS - 1 ? EDS_N_BINS - 1 : centre + 5;
        if (!(hp[k] > 0.0f))
            continue;
        for (b = b_lo; b <= b_hi; ++b) {
            const float pos = (fabsf(eds_bin_hz[b] - fh[k]) / BIN_HZ_F) * (float)EDS_WIN_OVERSAMPLE;
            if (pos < (float)(EDS_WIN_TABLE_N - 1)) {
                const int i0 = (int)pos;
                const float frac = pos - (float)i0;
                pv[b] += hp[k] * (eds_win_table[i0] * (1.0f - frac) + eds_win_table[i0 + 1] * frac);
            }
        }
    }
    /* noise part (skipped when alpha = 1: (1 - alpha) en is then exactly 0) and total */
    if (alpha < 1.0f)
        noise_envelope(w, p, bw, eds_bin_hz, EDS_N_BINS, w->gn_bin, en, su, work, iwork);
    for (b = 0; b < EDS_N_BINS; ++b) {
        const float noise = alpha < 1.0f ? (1.0f - alpha) * en[b] : 0.0f;
        pv[b] = loud * (pv[b] + noise) + w->background[b];
    }
    if (power)
        memcpy(power, pv, sizeof pv);
    if (norm) { /* power_to_norm_t: 10 log10(max(p, 1e-12)) clamped to [-50, 22.5] dB, mapped onto [-1, 1] */
        for (b = 0; b < EDS_N_BINS; ++b) {
            float db = 3.01029996f * log2_pos(pv[b] > 1e-12f ? pv[b] : 1e-12f);
            db = db < DB_MIN_F ? DB_MIN_F : (db > DB_MAX_F ? DB_MAX_F : db);
            norm[b] = 2.0f * (db - DB_MIN_F) / (DB_MAX_F - DB_MIN_F) - 1.0f;
        }
    }
    return n_bad;
}

/* ---- noise and FFT ------------------------------------------------------------------------------------ */

void eds_white_noise(uint32_t seed, uint32_t frame_index, float out[EDS_NOISE_FFT])
{
    uint32_t i;
    for (i = 0; i < EDS_NOISE_FFT; ++i) {
        uint32_t counter = frame_index * (uint32_t)EDS_NOISE_FFT + i;
        uint32_t h = eds_lowbias32(counter * 0x9E3779B9u + seed);
        float u = (float)(h >> 8) * (1.0f / 16777216.0f);
        out[i] = (2.0f * u - 1.0f) * SQRT3_F;
    }
}

/* In-place complex FFT of 128 points (interleaved re, im), radix 2; sign -1 forward, +1 inverse (unscaled). */
static void fft128(float *z, int sign)
{
    uint32_t i, len, start, k;
    for (i = 0; i < 128u; ++i) {
        uint32_t j = eds_bitrev7[i];
        if (i < j) {
            float tr = z[2 * i], ti = z[2 * i + 1];
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
                const float wr = eds_cos128[k * step];
                const float wi = sign < 0 ? -eds_sin128[k * step] : eds_sin128[k * step];
                float *a = z + 2 * (start + k), *b = z + 2 * (start + k + half);
                float tr = b[0] * wr - b[1] * wi;
                float ti = b[0] * wi + b[1] * wr;
                b[0] = a[0] - tr;
                b[1] = a[1] - ti;
                a[0] = a[0] + tr;
                a[1] = a[1] + ti;
            }
        }
    }
}

/* x (256 real) -> spec (129 complex, interleaved); `z` is 256 floats of scratch (may alias nothing). */
static void rfft256_work(const float *x, float *spec, float *z)
{
    int k;
    memcpy(z, x, EDS_NOISE_FFT * sizeof(float)); /* z[n] = x[2n] + i x[2n+1] */
    fft128(z, -1);
    for (k = 0; k <= 128; ++k) {
        const int a = k & 127, c = (128 - k) & 127;
        const float zr = z[2 * a], zi = z[2 * a + 1], cr = z[2 * c], ci = -z[2 * c + 1];
        const float er = 0.5f * (zr + cr), ei = 0.5f * (zi + ci);
        const float orr = 0.5f * (zi - ci), oi = -0.5f * (zr - cr); /* (z - conj) / 2i */
        const float wr = eds_cos256[k], wi = -eds_sin256[k];
        spec[2 * k] = er + (wr * orr - wi * oi);
        spec[2 * k + 1] = ei + (wr * oi + wi * orr);
    }
}

/* spec (129 complex) -> x (256 real), 1/256 scaling; `z` is 256 floats of scratch. */
static void irfft256_work(const float *spec, float *x, float *z)
{
    int k, n;
    for (k = 0; k < 128; ++k) {
        const int c = 128 - k;
        const float xr = spec[2 * k], xi = k == 0 ? 0.0f : spec[2 * k + 1];
        const float cr = spec[2 * c], ci = c == 128 ? 0.0f : -spec[2 * c + 1];
        const float er = 0.5f * (xr + cr), ei = 0.5f * (xi + ci);
        const float dr = 0.5f * (xr - cr), di = 0.5f * (xi - ci);
        const float wr = eds_cos256[k], wi = eds_sin256[k]; /* W^-k */
        const float orr = dr * wr - di * wi, oi = dr * wi + di * wr;
        z[2 * k] = er - oi; /* E + i O */
        z[2 * k + 1] = ei + orr;
    }
    fft128(z, +1);
    for (n = 0; n < EDS_NOISE_FFT; ++n)
        x[n] = z[n] * (1.0f / 128.0f);
}

void eds_rfft256(const float x[EDS_NOISE_FFT], float spec[2 * EDS_NOISE_BINS])
{
    float z[EDS_NOISE_FFT];
    rfft256_work(x, spec, z);
}

void eds_irfft256(const float spec[2 * EDS_NOISE_BINS], float x[EDS_NOISE_FFT])
{
    float z[EDS_NOISE_FFT];
    irfft256_work(spec, x, z);
}

/* ---- streaming audio (render.py FrameRenderer) --------------------------------------------------------- */

void eds_state_init(eds_state *s, const eds_weights *w, uint32_t seed, int include_background)
{
    s->w = w;
    s->seed = seed;
    s->include_background = include_background ? 1 : 0;
    eds_state_reset(s);
}

void eds_state_reset(eds_state *s)
{
    s->have_prev = 0;
    s->phase = 0u;
    s->frame_index = 0u;
    s->n_clamped = 0u;
    memset(s->prev, 0, sizeof s->prev);
    memset(s->prev_amp, 0, sizeof s->prev_amp);
    memset(s->tail, 0, sizeof s->tail);
}

uint32_t eds_render_frame(eds_state *s, const float params[EDS_N_PARAMS], float out[EDS_HOP])
{
    const eds_weights *w = s->w;
    float p[EDS_N_PARAMS];
    float *const amp = s->amp, *const prev_amp = s->prev_amp, *const gain = s->env;
    float *const seg = s->work, *const z = s->work + EDS_NOISE_FFT;
    float f0_prev, f0_step;
    uint32_t n_bad, acc, k, n_active = 0;
    int i;

    n_bad = eds_clamp_params(w, params, p);
    s->n_clamped = s->n_clamped + n_bad < s->n_clamped ? 0xFFFFFFFFu : s->n_clamped + n_bad;
    harmonic_amplitudes_work(w, p, amp, s->fh, s->env, s->work, s->iwork);
    /* first frame: prev = p, prev_amp = 0 (prev_amp is zeroed by reset) */
    f0_prev = s->have_prev ? s->prev[EDS_P_F0] : p[EDS_P_F0];

    /* f0s = prev[F0] + (p[F0] - prev[F0]) * ramp; inc = (f0s * _INC_SCALE + 0.5).astype(uint32) */
    f0_step = p[EDS_P_F0] - f0_prev;
    acc = s->phase;
    for (i = 0; i < EDS_HOP; ++i) {
        const float f0s = f0_prev + f0_step * ((float)i / (float)EDS_HOP);
        s->acc[i] = acc;
        acc += (uint32_t)(f0s * INC_SCALE + 0.5f);
    }
    s->phase = acc;

    /* harmonics: amps = prev_amp + (amp - prev_amp) * ramp; harm = sum_k amps * sin(k * acc) */
    for (k = 0; k < w->n_harmonics; ++k)
        if (amp[k] != 0.0f || prev_amp[k] != 0.0f)
            n_active = k + 1u;
    for (i = 0; i < EDS_HOP; ++i)
        out[i] = 0.0f;
    for (k = 0; k < n_active; ++k) {
        const float a0 = prev_amp[k], da = amp[k] - prev_amp[k];
        const uint32_t mult = k + 1u;
        if (a0 == 0.0f && amp[k] == 0.0f)
            continue;
        for (i = 0; i < EDS_HOP; ++i) {
            const float a = a0 + da * ((float)i / (float)EDS_HOP);
            out[i] += a * sin_phase(s->acc[i] * mult); /* np.sin(ph.astype(float32) * 2 pi / 2^32) */
        }
    }

    /* noise: segment centred on this frame, shaped in the FFT domain, sqrt-Hann, overlap-added */
    noise_gain_work(w, p, s->include_background, gain, s->su, s->work, s->iwork);
    eds_white_noise(s->seed, s->frame_index, seg);
    {
        float spec[2 * EDS_NOISE_BINS];
        rfft256_work(seg, spec, z);
        for (k = 0; k < EDS_NOISE_BINS; ++k) {
            spec[2 * k] *= gain[k];
            spec[2 * k + 1] *= gain[k];
        }
        irfft256_work(spec, seg, z);
    }
    for (i = 0; i < EDS_NOISE_FFT; ++i)
        seg[i] *= eds_sqrt_hann[i];
    for (i = 0; i < EDS_HOP; ++i) {
        out[i] = out[i] + (s->tail[i] + seg[i]);
        s->tail[i] = seg[EDS_HOP + i];
    }

    memcpy(s->prev, p, sizeof s->prev);
    memcpy(prev_amp, amp, w->n_harmonics * sizeof(float));
    s->have_prev = 1;
    s->frame_index += 1u;
    return n_bad;
}

#else
typedef int eds_float_path_not_built; /* EDSYNTH_FIXED_ONLY: keep the translation unit non-empty */
#endif /* EDSYNTH_FIXED_ONLY */
