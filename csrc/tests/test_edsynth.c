/*
 * test_edsynth.c -- C-only tests of the edsynth core (no Python needed).
 *
 * Usage: test_edsynth [FILE.edsynth [PARAMS.f32 EXPECTED.f32 SEED]]
 *   no arguments   checks on a synth image built here (Lorentzian shapes, a few dB of gain ripple);
 *   FILE           the same checks on an exported file;
 *   PARAMS/EXPECTED/SEED  audio parity against reference vectors (raw little-endian float32: n_frames x 18
 *                  parameters, n_frames x 128 samples from the numpy FrameRenderer.render with SEED),
 *                  within 1e-4.
 * Build with -DEDS_TEST_HEADER='"file.h"' to also load the image a generated header embeds
 * (`edgensd export synth --header`), and with -DEDSYNTH_FIXED_ONLY to test a no-FPU build of the core
 * (only the fixed-point checks run; the harness itself may still use float).
 * Exit status 0 when every check passes; each failure is printed.
 */
#include "edsynth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef EDS_TEST_HEADER
#include EDS_TEST_HEADER
#endif

static int n_checks = 0, n_failed = 0;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        ++n_checks;                                                        \
        if (!(cond)) {                                                     \
            ++n_failed;                                                    \
            printf("FAIL %s:%d: %s -- ", __FILE__, __LINE__, #cond);       \
            printf(__VA_ARGS__);                                           \
            printf("\n");                                                  \
        }                                                                  \
    } while (0)

/* ---- a synth image built in C ----------------------------------------------------------------------- */

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

#ifndef EDSYNTH_FIXED_ONLY
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
#endif

static void put_f32(uint8_t *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(p, v);
}

static void fix_crc(uint8_t *img, size_t n)
{
    put_u32(img + n - 4, eds_crc32(img, n - 4));
}

/* the 'high' voice preset, Lorentzian shapes, typical bandwidths, a little gain ripple */
static void build_image(uint8_t *img)
{
    static const float lo[18] = {110, -60, 0, 250, 650, 1700, 2800, 3800, 4800, 0, 0, 0, 0, 0, 0, 1000, 300, 0};
    static const float hi[18] = {420, 30, 1, 1100, 3000, 4000, 5000, 6200, 7600, 1, 1, 1, 1, 1, 1, 7800, 5000, 1};
    static const float bw0[6] = {80, 100, 150, 200, 250, 300};
    uint8_t *pl = img + EDS_HEADER_BYTES;
    int i, j, k = 0;
    memset(img, 0, EDS_FILE_BYTES);
    memcpy(img, "EDSYNTH", 8);
    put_u32(img + 8, EDS_FILE_VERSION);
    put_u32(img + 12, EDS_HEADER_BYTES);
    put_u32(img + 16, 4u * EDS_PAYLOAD_FLOATS);
    put_u32(img + 20, EDS_N_FORMANTS);
    put_u32(img + 24, EDS_N_KNOTS);
    put_u32(img + 28, EDS_N_GAIN);
    put_u32(img + 32, EDS_N_BINS);
    put_u32(img + 36, 73u); /* ceil(8000 / 110) */
    memcpy(img + 40, "ctest", 5);
    for (i = 0; i < 18; ++i)
        put_f32(pl + 4 * k++, lo[i]);
    for (i = 0; i < 18; ++i)
        put_f32(pl + 4 * k++, hi[i]);
    for (i = 0; i < EDS_N_SHAPES; ++i)
        for (j = 0; j < EDS_N_KNOTS; ++j) {
            double x = pow(2.0, 0.25 * j) - 1.0;
            put_f32(pl + 4 * k++, (float)((1.0 + 0.1 * i) * log1p(x * x)));
        }
    for (i = 0; i < 6; ++i)
        put_f32(pl + 4 * k++, bw0[i]);
    for (i = 0; i < 6; ++i)
        put_f32(pl + 4 * k++, 0.02f);
    for (i = 0; i < EDS_N_GAIN; ++i)
        put_f32(pl + 4 * k++, i == 0 ? 0.0f : (float)(2.0 * cos(1.7 * i) / (i + 1)));
    for (i = 0; i < EDS_N_GAIN; ++i)
        put_f32(pl + 4 * k++, i == 0 ? -3.0f : (float)(1.5 * sin(0.9 * i) / (i + 1)));
    for (i = 0; i < EDS_N_BINS; ++i)
        put_f32(pl + 4 * k++, (float)(1e-6 * (1.0 + 0.5 * cos(0.05 * i))));
    fix_crc(img, EDS_FILE_BYTES);
}

static int read_file(const char *path, uint8_t **data, size_t *n)
{
    FILE *f = fopen(path, "rb");
    long size;
    if (!f)
        return -1;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return -1;
    }
    *data = (uint8_t *)malloc((size_t)size + 1u);
    *n = (size_t)size;
    if (!*data || fread(*data, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

#define N_FRAMES 400

static void test_hash(void)
{
    /* golden values from edgensd.speech.render.lowbias32 */
    CHECK(eds_lowbias32(0u) == 0u, "lowbias32(0)");
    CHECK(eds_lowbias32(1u) == 0x688990c0u, "lowbias32(1) = %#x", eds_lowbias32(1u));
    CHECK(eds_lowbias32(0x9E3779B9u) == 0x01fce552u, "lowbias32(golden)");
    CHECK(eds_lowbias32(0xFFFFFFFFu) == 0x6768824au, "lowbias32(max)");
    CHECK(eds_lowbias32(123456789u) == 0xa8f1db88u, "lowbias32(123456789)");
    CHECK(eds_crc32("123456789", 9) == 0xCBF43926u, "crc32 check value %#x", eds_crc32("123456789", 9));
}

static void test_refusals(const uint8_t *good, size_t n)
{
    uint8_t *img = (uint8_t *)malloc(n + 8);
    eds_load_info info;
    eds_fx_weights *fw = (eds_fx_weights *)malloc(sizeof *fw);
    int st;
#ifndef EDSYNTH_FIXED_ONLY
    eds_weights *w = (eds_weights *)malloc(sizeof *w);
    CHECK(eds_weights_load(w, good, n, &info) == EDS_OK, "good image loads (float)");
    CHECK(eds_weights_load(NULL, good, n, &info) == EDS_E_NULL, "NULL weights");
    free(w);
#endif
    CHECK(eds_fx_weights_load(fw, good, n, &info) == EDS_OK, "good image loads (fixed)");
    CHECK(eds_file_check(NULL, n, &info) == EDS_E_NULL, "NULL data");
    CHECK(eds_file_check(good, 7, &info) == EDS_E_SHORT, "7 bytes");
    memcpy(img, good, n);
    img[0] ^= 1u;
    CHECK(eds_file_check(img, n, &info) == EDS_E_MAGIC, "magic");
    memcpy(img, good, n);
    put_u32(img + 8, 2u);
    fix_crc(img, n);
    st = eds_file_check(img, n, &info);
    CHECK(st == EDS_E_VERSION && info.version == 2u, "version 2 -> %d (%u)", st, info.version);
    CHECK(eds_file_check(good, 40, &info) == EDS_E_SHORT, "header cut");
    memcpy(img, good, n);
    put_u32(img + 24, 32u);
    fix_crc(img, n);
    CHECK(eds_file_check(img, n, &info) == EDS_E_LAYOUT && info.bad_index == 24, "n_knots 32");
    st = eds_file_check(good, n - 1, &info);
    CHECK(st == EDS_E_SIZE && info.expected_bytes == n && info.actual_bytes == n - 1, "truncated -> %d", st);
    memcpy(img, good, n);
    img[n] = 0;
    CHECK(eds_file_check(img, n + 1, &info) == EDS_E_SIZE, "padded");
    memcpy(img, good, n);
    img[EDS_HEADER_BYTES + 100] ^= 0x10u;
    st = eds_file_check(img, n, &info);
    CHECK(st == EDS_E_CHECKSUM && info.crc_stored != info.crc_computed, "flipped payload bit -> %d", st);
    memcpy(img, good, n);
    put_u32(img + EDS_HEADER_BYTES + 4 * 40, 0x7FC00000u); /* NaN in shape_tables[0][4] */
    fix_crc(img, n);
    st = eds_file_check(img, n, &info);
    CHECK(st == EDS_E_VALUE && info.bad_index == 40, "NaN value -> %d at %d", st, info.bad_index);
    memcpy(img, good, n);
    put_f32(img + EDS_HEADER_BYTES + 4 * (18 + EDS_P_F0), 50.0f); /* hi f0 below lo f0 */
    fix_crc(img, n);
    CHECK(eds_file_check(img, n, &info) == EDS_E_VALUE, "hi < lo");
    memcpy(img, good, n);
    put_u32(img + 36, 10u);
    fix_crc(img, n);
    CHECK(eds_file_check(img, n, &info) == EDS_E_HARMONICS, "too few harmonics");
    memcpy(img, good, n);
    put_u32(img + 36, EDS_MAX_HARMONICS + 1u);
    fix_crc(img, n);
    CHECK(eds_file_check(img, n, &info) == EDS_E_HARMONICS, "too many harmonics");
    CHECK(strcmp(eds_status_message(EDS_E_CHECKSUM), eds_status_message(EDS_E_SIZE)) != 0, "distinct messages");
    free(fw);
    free(img);
}

/* ---- trajectories ---------------------------------------------------------------------------------- */
#ifndef EDSYNTH_FIXED_ONLY

/* a smooth deterministic trajectory inside the 'high' range, moderate loudness */
static void trajectory(int t, float *p)
{
    const double s = (double)t;
    int i;
    p[EDS_P_F0] = (float)(200.0 + 80.0 * sin(0.031 * s));
    p[EDS_P_LOUD] = (float)(-28.0 + 8.0 * sin(0.017 * s + 1.0));
    p[EDS_P_ALPHA] = (float)(0.5 + 0.49 * sin(0.023 * s));
    for (i = 0; i < 6; ++i) {
        static const double centre[6] = {600, 1700, 2800, 3900, 5000, 6100};
        p[EDS_P_F1 + i] = (float)(centre[i] + 150.0 * sin(0.011 * s * (i + 1)));
        p[EDS_P_A1 + i] = (float)(0.5 + 0.45 * cos(0.013 * s + i));
    }
    p[EDS_P_FU] = (float)(4000.0 + 2000.0 * sin(0.019 * s));
    p[EDS_P_BU] = (float)(1500.0 + 800.0 * cos(0.007 * s));
    p[EDS_P_AU] = (float)(0.5 + 0.4 * sin(0.029 * s));
}

/* bad frames: NaN, +-inf, f0 = 0, all zero, huge, silence */
static void bad_frame(int which, float *p)
{
    trajectory(which, p);
    switch (which % 6) {
    case 0: p[EDS_P_F0] = NAN; p[EDS_P_LOUD] = NAN; break;
    case 1: p[EDS_P_LOUD] = INFINITY; p[EDS_P_F1] = -INFINITY; break;
    case 2: p[EDS_P_F0] = 0.0f; break;
    case 3: memset(p, 0, 18 * sizeof(float)); break;
    case 4: p[EDS_P_ALPHA] = 1e30f; p[EDS_P_BU] = -1e30f; p[EDS_P_AU] = 7.0f; break;
    default: p[EDS_P_LOUD] = -60.0f; break;
    }
}

static const int bad_counts[6] = {2, 2, 1, 9, 3, 0}; /* values out of range in each bad frame */

static void test_float(const uint8_t *img, size_t n)
{
    eds_weights *w = (eds_weights *)malloc(sizeof *w);
    eds_state *s = (eds_state *)malloc(sizeof *s);
    eds_fx_weights *fw = (eds_fx_weights *)malloc(sizeof *fw);
    eds_fx_state *fs = (eds_fx_state *)malloc(sizeof *fs);
    float *audio = (float *)malloc(sizeof(float) * EDS_HOP * N_FRAMES);
    float *again = (float *)malloc(sizeof(float) * EDS_HOP * N_FRAMES);
    float p[18], q[18], norm[EDS_N_BINS], power[EDS_N_BINS];
    double sig = 0.0, err = 0.0;
    uint32_t expect_clamped = 0, nc;
    int t, i, finite = 1, in_range = 1;
    CHECK(eds_weights_load(w, img, n, NULL) == EDS_OK, "load");
    CHECK(eds_fx_weights_load(fw, img, n, NULL) == EDS_OK, "load fixed");

    /* clamp */
    trajectory(3, p);
    p[EDS_P_F0] = NAN;
    p[EDS_P_LOUD] = INFINITY;
    p[EDS_P_ALPHA] = -INFINITY;
    p[EDS_P_F1] = 1e9f;
    nc = eds_clamp_params(w, p, q);
    CHECK(nc == 4u, "clamp count %u", nc);
    CHECK(q[EDS_P_F0] == w->lo[EDS_P_F0] && q[EDS_P_LOUD] == w->hi[EDS_P_LOUD] && q[EDS_P_ALPHA] == 0.0f
          && q[EDS_P_F1] == w->hi[EDS_P_F1] && q[EDS_P_A1] == p[EDS_P_A1], "clamped values");

    /* FFT round trip and noise statistics */
    {
        float x[256], spec[258], y[256], mean = 0.0f, var = 0.0f, maxerr = 0.0f;
        eds_white_noise(5u, 9u, x);
        for (i = 0; i < 256; ++i) {
            mean += x[i] / 256.0f;
            var += x[i] * x[i] / 256.0f;
        }
        CHECK(fabsf(mean) < 0.25f && var > 0.7f && var < 1.3f, "noise mean %g var %g", mean, var);
        eds_rfft256(x, spec);
        eds_irfft256(spec, y);
        for (i = 0; i < 256; ++i)
            maxerr = fmaxf(maxerr, fabsf(y[i] - x[i]));
        CHECK(maxerr < 1e-5f, "FFT round trip error %g", maxerr);
        CHECK(fabsf(spec[1]) == 0.0f && fabsf(spec[257]) == 0.0f, "DC and Nyquist bins are real");
    }

    /* spectrogram frames: in [-1, 1], finite, clamp counted */
    for (t = 0; t < 60; ++t) {
        if (t % 10 == 9) {
            bad_frame(t / 10, p);
            expect_clamped += (uint32_t)bad_counts[(t / 10) % 6];
        } else {
            trajectory(t, p);
        }
        nc = eds_spectrogram_frame(w, p, power, norm);
        expect_clamped -= nc;
        for (i = 0; i < EDS_N_BINS; ++i) {
            finite &= isfinite(norm[i]) && isfinite(power[i]);
            in_range &= norm[i] >= -1.0f && norm[i] <= 1.0f && power[i] > 0.0f;
        }
    }
    CHECK(finite && in_range, "spectrogram frames finite and in [-1, 1]");
    CHECK(expect_clamped == 0u, "spectrogram clamp counts off by %u", expect_clamped);

    /* audio: finite for every frame, bad ones included; counts; determinism after reset */
    eds_state_init(s, w, 1234u, 0);
    expect_clamped = 0;
    finite = 1;
    for (t = 0; t < N_FRAMES; ++t) {
        if (t % 37 == 36) {
            bad_frame(t / 37, p);
            expect_clamped += (uint32_t)bad_counts[(t / 37) % 6];
        } else {
            trajectory(t, p);
        }
        eds_render_frame(s, p, audio + EDS_HOP * t);
        for (i = 0; i < EDS_HOP; ++i)
            finite &= isfinite(audio[EDS_HOP * t + i]) && fabsf(audio[EDS_HOP * t + i]) < 1e6f;
    }
    CHECK(finite, "audio finite and bounded with bad frames");
    CHECK(s->n_clamped == expect_clamped, "audio clamp count %u, expected %u", s->n_clamped, expect_clamped);
    CHECK(s->frame_index == N_FRAMES, "frame counter");
    eds_state_reset(s);
    for (t = 0; t < N_FRAMES; ++t) {
        if (t % 37 == 36)
            bad_frame(t / 37, p);
        else
            trajectory(t, p);
        eds_render_frame(s, p, again + EDS_HOP * t);
    }
    CHECK(memcmp(audio, again, sizeof(float) * EDS_HOP * N_FRAMES) == 0, "reset reproduces the audio exactly");

    /* silence: loudness at the floor gives (nearly) nothing */
    eds_state_reset(s);
    {
        float peak = 0.0f;
        for (t = 0; t < 20; ++t) {
            trajectory(t, p);
            p[EDS_P_LOUD] = -60.0f;
            eds_render_frame(s, p, audio);
            for (i = 0; i < EDS_HOP; ++i)
                peak = fmaxf(peak, fabsf(audio[i]));
        }
        CHECK(peak < 0.01f, "silence peak %g", peak);
    }

    /* fixed point vs float on the smooth trajectory (Q15 output saturates where float32 passes full scale) */
    eds_state_init(s, w, 99u, 0);
    eds_fx_state_init(fs, fw, 99u, 0);
    {
        float peak = 0.0f;
        double snr;
        for (t = 0; t < N_FRAMES; ++t) {
            int16_t y[EDS_HOP];
            int32_t pq[18];
            trajectory(t, p);
            eds_render_frame(s, p, audio);
            eds_fx_params_from_float(p, pq);
            eds_fx_render_frame(fs, pq, y);
            for (i = 0; i < EDS_HOP; ++i) {
                double d = (double)y[i] / 32768.0 - (double)audio[i];
                sig += (double)audio[i] * audio[i];
                err += d * d;
                peak = fmaxf(peak, fabsf(audio[i]));
            }
        }
        snr = 10.0 * log10(sig / (err > 0.0 ? err : 1e-30));
        printf("fixed-point SNR vs float32: %.1f dB (float peak %.3f, saturated %u)\n", snr, peak, fs->n_saturated);
        CHECK(peak > 0.01f, "trajectory audible (peak %g)", peak);
        if (peak < 0.99f) {
            CHECK(snr >= 40.0, "fixed-point SNR %.1f dB", snr);
            CHECK(fs->n_saturated == 0u, "no saturation below full scale (%u)", fs->n_saturated);
        }
    }
    free(w);
    free(s);
    free(fw);
    free(fs);
    free(audio);
    free(again);
}

/* the widest weights a file may hold (loudness +-100 dB, 120 dB of gain, f0 40..7999 Hz, 200 harmonics):
 * every output finite, the fixed-point path saturating (and counting) instead of overflowing */
static void test_extreme_weights(void)
{
    static uint8_t img[EDS_FILE_BYTES];
    eds_weights *w = (eds_weights *)malloc(sizeof *w);
    eds_state *s = (eds_state *)malloc(sizeof *s);
    eds_fx_weights *fw = (eds_fx_weights *)malloc(sizeof *fw);
    eds_fx_state *fs = (eds_fx_state *)malloc(sizeof *fs);
    uint8_t *pl = img + EDS_HEADER_BYTES;
    float p[18], out[EDS_HOP], norm[EDS_N_BINS];
    int16_t y[EDS_HOP];
    int32_t q[18];
    int t, i, finite = 1, g;
    build_image(img);
    put_u32(img + 36, 200u);
    put_f32(pl + 4 * EDS_P_F0, 40.0f);
    put_f32(pl + 4 * (18 + EDS_P_F0), 7999.0f);
    put_f32(pl + 4 * EDS_P_LOUD, -100.0f);
    put_f32(pl + 4 * (18 + EDS_P_LOUD), 100.0f);
    put_f32(pl + 4 * (18 + EDS_P_BU), 7999.0f);
    for (g = 0; g < 2 * EDS_N_GAIN; ++g)
        put_f32(pl + 4 * (36 + 231 + 12 + g), 0.0f);
    put_f32(pl + 4 * (36 + 231 + 12), 60.0f);      /* gain_v_db[0] */
    put_f32(pl + 4 * (36 + 231 + 12 + 1), -60.0f); /* gain_v_db[1]: sum |c| = 120 dB */
    put_f32(pl + 4 * (36 + 231 + 12 + 24), 119.0f); /* gain_n_db[0] */
    for (g = 0; g < EDS_N_BINS; ++g)
        put_f32(pl + 4 * (36 + 231 + 12 + 48 + g), 1e3f);
    fix_crc(img, EDS_FILE_BYTES);
    CHECK(eds_weights_load(w, img, EDS_FILE_BYTES, NULL) == EDS_OK, "extreme image loads");
    CHECK(eds_fx_weights_load(fw, img, EDS_FILE_BYTES, NULL) == EDS_OK, "extreme image loads (fixed)");
    eds_state_init(s, w, 3u, 1);
    eds_fx_state_init(fs, fw, 3u, 1);
    for (t = 0; t < 64; ++t) {
        for (i = 0; i < 18; ++i)
            p[i] = ((t >> (i % 5)) & 1) ? w->hi[i] : w->lo[i];
        if (t % 7 == 3)
            p[EDS_P_LOUD] = 100.0f;
        eds_render_frame(s, p, out);
        eds_spectrogram_frame(w, p, NULL, norm);
        eds_fx_params_from_float(p, q);
        eds_fx_render_frame(fs, q, y);
        for (i = 0; i < EDS_HOP; ++i)
            finite &= isfinite(out[i]);
        for (i = 0; i < EDS_N_BINS; ++i)
            finite &= isfinite(norm[i]) && norm[i] >= -1.0f && norm[i] <= 1.0f;
    }
    CHECK(finite, "extreme weights: float audio and spectrogram finite");
    CHECK(fs->n_saturated > 0u, "extreme weights: fixed point saturates and counts (%u)", fs->n_saturated);
    CHECK(s->n_clamped == 0u && fs->n_clamped == 0u, "bounds themselves are not clamped (%u, %u)", s->n_clamped,
          fs->n_clamped);
    free(w);
    free(s);
    free(fw);
    free(fs);
}

static int test_reference(const uint8_t *img, size_t n, const char *params_path, const char *expected_path,
                          uint32_t seed)
{
    uint8_t *pbuf = NULL, *ebuf = NULL;
    size_t pn = 0, en = 0;
    eds_weights *w = (eds_weights *)malloc(sizeof *w);
    eds_state *s = (eds_state *)malloc(sizeof *s);
    float maxdiff = 0.0f, out[EDS_HOP];
    size_t t, i, n_frames;
    if (read_file(params_path, &pbuf, &pn) != 0 || read_file(expected_path, &ebuf, &en) != 0) {
        printf("FAIL cannot read %s or %s\n", params_path, expected_path);
        return 1;
    }
    n_frames = pn / (18 * 4);
    CHECK(pn == n_frames * 18 * 4 && en == n_frames * EDS_HOP * 4 && n_frames > 0, "reference sizes");
    CHECK(eds_weights_load(w, img, n, NULL) == EDS_OK, "load for reference");
    eds_state_init(s, w, seed, 0);
    /* FrameRenderer.render: push every frame and the last once more, drop the first block */
    for (t = 0; t <= n_frames && en == n_frames * EDS_HOP * 4; ++t) {
        const uint8_t *row = pbuf + 72 * (t < n_frames ? t : n_frames - 1);
        float p[18];
        for (i = 0; i < 18; ++i) {
            uint32_t v = get_u32(row + 4 * i);
            memcpy(&p[i], &v, 4);
        }
        eds_render_frame(s, p, out);
        if (t == 0)
            continue;
        for (i = 0; i < EDS_HOP; ++i) {
            uint32_t v = get_u32(ebuf + 4 * ((t - 1) * EDS_HOP + i));
            float e;
            memcpy(&e, &v, 4);
            maxdiff = fmaxf(maxdiff, fabsf(out[i] - e));
        }
    }
    printf("audio parity vs numpy reference: %zu frames, max |diff| = %.3g\n", n_frames, maxdiff);
    CHECK(maxdiff <= 1e-4f, "audio parity %g", maxdiff);
    free(pbuf);
    free(ebuf);
    free(w);
    free(s);
    return 0;
}
#endif /* EDSYNTH_FIXED_ONLY */

static void test_fixed(const uint8_t *img, size_t n)
{
    eds_fx_weights *fw = (eds_fx_weights *)malloc(sizeof *fw);
    eds_fx_state *fs = (eds_fx_state *)malloc(sizeof *fs);
    int16_t *a = (int16_t *)malloc(sizeof(int16_t) * EDS_HOP * N_FRAMES);
    int16_t *b = (int16_t *)malloc(sizeof(int16_t) * EDS_HOP * N_FRAMES);
    int32_t q[18], c[18];
    uint32_t nc;
    int t, i, r, nonzero = 0;
    CHECK(eds_fx_weights_load(fw, img, n, NULL) == EDS_OK, "load fixed");
    /* Q16.16 clamp */
    for (i = 0; i < 18; ++i)
        q[i] = (fw->lo[i] / 2) + (fw->hi[i] / 2);
    q[EDS_P_F0] = 0;
    q[EDS_P_LOUD] = INT32_MAX;
    q[EDS_P_ALPHA] = INT32_MIN;
    nc = eds_fx_clamp_params(fw, q, c);
    CHECK(nc == 3u && c[EDS_P_F0] == fw->lo[EDS_P_F0] && c[EDS_P_LOUD] == fw->hi[EDS_P_LOUD] && c[EDS_P_ALPHA] == 0,
          "fixed clamp %u", nc);
    eds_fx_state_init(fs, fw, 7u, 1);
    for (r = 0; r < 2; ++r) {
        eds_fx_state_reset(fs);
        for (t = 0; t < N_FRAMES; ++t) {
            /* a coarse integer trajectory, extremes every 50 frames */
            for (i = 0; i < 18; ++i)
                q[i] = fw->lo[i] + (int32_t)(((int64_t)(fw->hi[i] - fw->lo[i]) * ((t * (i + 3)) % 97)) / 97);
            q[EDS_P_LOUD] = -20 * 65536 + (t % 40) * 16384;
            if (t % 50 == 49)
                for (i = 0; i < 18; ++i)
                    q[i] = (i + t) % 2 ? INT32_MAX : INT32_MIN;
            eds_fx_render_frame(fs, q, (r ? b : a) + EDS_HOP * t);
        }
    }
    CHECK(memcmp(a, b, sizeof(int16_t) * EDS_HOP * N_FRAMES) == 0, "fixed reset reproduces the audio exactly");
    CHECK(fs->n_clamped == 8u * 18u, "fixed clamp count %u", fs->n_clamped);
    for (i = 0; i < EDS_HOP * N_FRAMES; ++i)
        nonzero += a[i] != 0;
    CHECK(nonzero > EDS_HOP * N_FRAMES / 2, "fixed audio is not silent (%d nonzero)", nonzero);
    free(fw);
    free(fs);
    free(a);
    free(b);
}

int main(int argc, char **argv)
{
    static uint8_t built[EDS_FILE_BYTES];
    uint8_t *img = built;
    size_t n = EDS_FILE_BYTES;
    build_image(built);
    if (argc > 1 && read_file(argv[1], &img, &n) != 0) {
        printf("FAIL cannot read %s\n", argv[1]);
        return 1;
    }
    CHECK(eds_file_check(img, n, NULL) == EDS_OK, "image accepted: %s", eds_status_message(eds_file_check(img, n, NULL)));
    test_hash();
    test_refusals(img, n);
    test_fixed(img, n);
#ifndef EDSYNTH_FIXED_ONLY
    test_float(img, n);
    test_extreme_weights();
    if (argc > 4)
        test_reference(img, n, argv[2], argv[3], (uint32_t)strtoul(argv[4], NULL, 10));
#endif
#ifdef EDS_TEST_HEADER
    {
        /* the generated header embeds a synth image: it must load as it is */
        eds_fx_weights *fw = (eds_fx_weights *)malloc(sizeof *fw);
        CHECK(eds_fx_weights_load(fw, EDS_TEST_HEADER_SYMBOL, sizeof EDS_TEST_HEADER_SYMBOL, NULL) == EDS_OK,
              "header image loads");
        CHECK(argc < 2 || (n == sizeof EDS_TEST_HEADER_SYMBOL && memcmp(img, EDS_TEST_HEADER_SYMBOL, n) == 0),
              "header image equals the file");
        free(fw);
    }
#endif
    if (img != built)
        free(img);
    printf("%s: %d checks, %d failed%s\n", n_failed ? "FAILED" : "ok", n_checks, n_failed,
#ifdef EDSYNTH_FIXED_ONLY
           " (fixed-point-only build)"
#else
           ""
#endif
    );
    return n_failed ? 1 : 0;
}
