/*
 * edsynth_file.c -- synth file checks (integer arithmetic only), CRC-32, the noise hash, status texts.
 * Shared by the float and the fixed-point builds.
 */
#include "edsynth_internal.h"

#include <string.h>

static const char EDS_MAGIC[8] = {'E', 'D', 'S', 'Y', 'N', 'T', 'H', '\0'};

const char *eds_status_message(int status)
{
    switch (status) {
    case EDS_OK: return "ok";
    case EDS_E_NULL: return "a required pointer argument is NULL";
    case EDS_E_SHORT: return "file is shorter than a synth file header (truncated?)";
    case EDS_E_MAGIC: return "wrong magic: not an edgensd synth file";
    case EDS_E_VERSION: return "unsupported synth file format version";
    case EDS_E_LAYOUT: return "header sizes or dimensions differ from this build's";
    case EDS_E_SIZE: return "file size differs from the size its header declares (truncated or padded)";
    case EDS_E_CHECKSUM: return "CRC-32 checksum mismatch (file corrupted)";
    case EDS_E_VALUE: return "a value is NaN/inf or outside what the synthesizer accepts";
    case EDS_E_HARMONICS: return "harmonic count inconsistent with the voice's lowest f0 or above EDS_MAX_HARMONICS";
    default: return "unknown status";
    }
}

uint32_t eds_crc32(const void *data, size_t n_bytes)
{
    const uint8_t *p = (const uint8_t *)data;
    uint32_t crc = 0xFFFFFFFFu;
    size_t i;
    int b;
    for (i = 0; i < n_bytes; ++i) {
        crc ^= p[i];
        for (b = 0; b < 8; ++b)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return crc ^ 0xFFFFFFFFu;
}

uint32_t eds_lowbias32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    return x;
}

static uint32_t read_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

uint32_t eds_payload_bits(const eds_file_view *view, uint32_t i)
{
    return read_u32le(view->payload + 4u * i);
}

int32_t eds_f32bits_to_fixed(uint32_t bits, int frac_bits)
{
    uint32_t sign = bits >> 31;
    uint32_t ex = (bits >> 23) & 0xFFu;
    uint64_t man = (uint64_t)((bits & 0x7FFFFFu) | 0x800000u);
    uint64_t mag;
    int shift;
    if (ex == 0u)
        return 0; /* zero and subnormals */
    if (ex == 0xFFu)
        return sign ? INT32_MIN : INT32_MAX;
    shift = (int)ex - 150 + frac_bits; /* value * 2^frac_bits = man * 2^shift */
    if (shift >= 0)
        mag = shift > 31 ? (uint64_t)0x80000000u : man << shift;
    else if (shift < -40)
        mag = 0u;
    else
        mag = (man + ((uint64_t)1 << (-shift - 1))) >> (-shift);
    if (mag > 0x7FFFFFFFu)
        return sign ? INT32_MIN : INT32_MAX;
    return sign ? -(int32_t)mag : (int32_t)mag;
}

uint64_t eds_f32bits_to_u64_fixed(uint32_t bits, int frac_bits)
{
    uint32_t ex = (bits >> 23) & 0xFFu;
    uint64_t man = (uint64_t)((bits & 0x7FFFFFu) | 0x800000u);
    int shift;
    if ((bits >> 31) || ex == 0u)
        return 0u;
    shift = (int)ex - 150 + frac_bits;
    if (ex == 0xFFu || shift > 39)
        return (uint64_t)1 << 62;
    if (shift >= 0)
        return man << shift;
    if (shift < -40)
        return 0u;
    return (man + ((uint64_t)1 << (-shift - 1))) >> (-shift);
}

/* Order-preserving integer key of a finite float32 bit pattern (-0 and +0 map to 0). */
static int64_t f32key(uint32_t bits)
{
    return (bits & 0x80000000u) ? -(int64_t)(bits & 0x7FFFFFFFu) : (int64_t)bits;
}

/* float32 bit patterns of the limits checked below */
#define F32_ZERO 0x00000000u
#define F32_ONE 0x3F800000u
#define F32_8000 0x45FA0000u    /* 8000.0f */
#define F32_100 0x42C80000u     /* 100.0f */
#define F32_M100 0xC2C80000u    /* -100.0f */
#define F32_128 0x43000000u     /* 128.0f */

static int fail(eds_load_info *info, int status, int32_t index)
{
    if (info)
        info->bad_index = index;
    return status;
}

int eds_file_open(const void *data, size_t n_bytes, eds_load_info *info, eds_file_view *view)
{
    const uint8_t *p = (const uint8_t *)data;
    eds_load_info dummy;
    uint32_t expected, i, k, header_bytes, payload_bytes;
    int64_t gv_sum = 0, gn_sum = 0;
    if (!info)
        info = &dummy;
    memset(info, 0, sizeof(*info));
    info->bad_index = -1;
    info->actual_bytes = n_bytes > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)n_bytes;
    info->expected_bytes = EDS_FILE_BYTES;
    if (!data || !view)
        return EDS_E_NULL;
    if (n_bytes < 8u)
        return EDS_E_SHORT;
    if (memcmp(p, EDS_MAGIC, 8) != 0)
        return EDS_E_MAGIC;
    if (n_bytes < 12u)
        return EDS_E_SHORT;
    info->version = read_u32le(p + 8);
    if (info->version != EDS_FILE_VERSION)
        return EDS_E_VERSION;
    if (n_bytes < EDS_HEADER_BYTES)
        return EDS_E_SHORT;
    header_bytes = read_u32le(p + 12);
    payload_bytes = read_u32le(p + 16);
    if (header_bytes != EDS_HEADER_BYTES)
        return fail(info, EDS_E_LAYOUT, 12);
    if (payload_bytes != 4u * EDS_PAYLOAD_FLOATS)
        return fail(info, EDS_E_LAYOUT, 16);
    if (read_u32le(p + 20) != EDS_N_FORMANTS)
        return fail(info, EDS_E_LAYOUT, 20);
    if (read_u32le(p + 24) != EDS_N_KNOTS)
        return fail(info, EDS_E_LAYOUT, 24);
    if (read_u32le(p + 28) != EDS_N_GAIN)
        return fail(info, EDS_E_LAYOUT, 28);
    if (read_u32le(p + 32) != EDS_N_BINS)
        return fail(info, EDS_E_LAYOUT, 32);
    expected = header_bytes + payload_bytes + 4u;
    info->expected_bytes = expected;
    if (n_bytes != expected)
        return EDS_E_SIZE;
    info->crc_stored = read_u32le(p + expected - 4u);
    info->crc_computed = eds_crc32(p, expected - 4u);
    if (info->crc_stored != info->crc_computed)
        return EDS_E_CHECKSUM;

    view->payload = p + EDS_HEADER_BYTES;
    view->n_harmonics = read_u32le(p + 36);
    for (i = 0; i < EDS_VOICE_NAME_BYTES; ++i) {
        uint8_t c = p[40 + i];
        view->voice_name[i] = (char)((c == 0u || (c >= 32u && c < 127u)) ? c : '?');
    }
    view->voice_name[EDS_VOICE_NAME_BYTES] = '\0';

    /* every value finite */
    for (i = 0; i < EDS_OFF_END; ++i)
        if (((eds_payload_bits(view, i) >> 23) & 0xFFu) == 0xFFu)
            return fail(info, EDS_E_VALUE, (int32_t)i);
    /* bounds: lo < hi; loudness within +-100 dB; frequencies in (0, 8000); weights within [0, 1] */
    for (i = 0; i < EDS_N_PARAMS; ++i) {
        int64_t lo = f32key(eds_payload_bits(view, EDS_OFF_LO + i));
        int64_t hi = f32key(eds_payload_bits(view, EDS_OFF_HI + i));
        int is_weight = (i == EDS_P_ALPHA || i == EDS_P_AU || (i >= EDS_P_A1 && i < EDS_P_A1 + EDS_N_FORMANTS));
        if (!(lo < hi))
            return fail(info, EDS_E_VALUE, (int32_t)(EDS_OFF_LO + i));
        if (i == EDS_P_LOUD) {
            if (lo < f32key(F32_M100) || hi > f32key(F32_100))
                return fail(info, EDS_E_VALUE, (int32_t)(EDS_OFF_LO + i));
        } else if (is_weight) {
            if (lo < 0 || hi > f32key(F32_ONE))
                return fail(info, EDS_E_VALUE, (int32_t)(EDS_OFF_LO + i));
        } else {
            int lo_ok = (i == EDS_P_F0 || i == EDS_P_BU) ? lo > 0 : lo >= 0;
            if (!lo_ok || hi >= f32key(F32_8000))
                return fail(info, EDS_E_VALUE, (int32_t)(EDS_OFF_LO + i));
        }
    }
    for (i = EDS_OFF_SHAPE; i < EDS_OFF_BW0; ++i) /* -ln s >= 0, so s <= 1 */
        if (f32key(eds_payload_bits(view, i)) < 0)
            return fail(info, EDS_E_VALUE, (int32_t)i);
    for (i = 0; i < EDS_N_FORMANTS; ++i) {
        if (f32key(eds_payload_bits(view, EDS_OFF_BW0 + i)) <= 0)
            return fail(info, EDS_E_VALUE, (int32_t)(EDS_OFF_BW0 + i));
        k = eds_payload_bits(view, EDS_OFF_BWS + i);
        if (f32key(k) < 0 || f32key(k) >= f32key(F32_128))
            return fail(info, EDS_E_VALUE, (int32_t)(EDS_OFF_BWS + i));
    }
    for (i = 0; i < EDS_N_GAIN; ++i) {
        int32_t v = eds_f32bits_to_fixed(eds_payload_bits(view, EDS_OFF_GV + i), 16);
        int32_t n = eds_f32bits_to_fixed(eds_payload_bits(view, EDS_OFF_GN + i), 16);
        gv_sum += v < 0 ? -(int64_t)v : (int64_t)v;
        gn_sum += n < 0 ? -(int64_t)n : (int64_t)n;
    }
    if (gv_sum > ((int64_t)EDS_MAX_GAIN_DB_SUM << 16))
        return fail(info, EDS_E_VALUE, EDS_OFF_GV);
    if (gn_sum > ((int64_t)EDS_MAX_GAIN_DB_SUM << 16))
        return fail(info, EDS_E_VALUE, EDS_OFF_GN);
    for (i = EDS_OFF_BG; i < EDS_OFF_END; ++i)
        if (f32key(eds_payload_bits(view, i)) < 0)
            return fail(info, EDS_E_VALUE, (int32_t)i);
    /* K harmonics must reach 8 kHz at the lowest f0 (1/65536 Hz tolerance per harmonic) and fit */
    k = view->n_harmonics;
    if (k < 1u || k > EDS_MAX_HARMONICS)
        return EDS_E_HARMONICS;
    {
        uint64_t f0_lo = (uint64_t)eds_f32bits_to_fixed(eds_payload_bits(view, EDS_OFF_LO + EDS_P_F0), 16);
        if ((uint64_t)k * (f0_lo + 1u) < ((uint64_t)8000u << 16))
            return EDS_E_HARMONICS;
    }
    return EDS_OK;
}

int eds_file_check(const void *data, size_t n_bytes, eds_load_info *info)
{
    eds_file_view view;
    return eds_file_open(data, n_bytes, info, &view);
}
