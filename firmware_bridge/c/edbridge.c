/* edbridge: framer and parser of the serial bridge protocol (see edbridge.h and PROTOCOL.md). */
#include "edbridge.h"

#include <string.h>

/* ---- little-endian helpers ---- */

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int f32_finite(float f) { return ((f32_bits(f) >> 23) & 0xFFu) != 0xFFu; }

static int f32_positive(float f) { return f32_finite(f) && f > 0.0f; }

/* ---- checksums: 16-entry (nibble) tables, 128 bytes of constants, two lookups per byte ---- */

static const uint16_t crc16_nibble[16] = {0x0000u, 0x1021u, 0x2042u, 0x3063u, 0x4084u, 0x50A5u, 0x60C6u, 0x70E7u,
                                          0x8108u, 0x9129u, 0xA14Au, 0xB16Bu, 0xC18Cu, 0xD1ADu, 0xE1CEu, 0xF1EFu};
static const uint32_t crc32_nibble[16] = {0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
                                          0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
                                          0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};

uint16_t edb_crc16(uint16_t crc, const uint8_t *data, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        crc = (uint16_t)(((unsigned)crc << 4) ^ crc16_nibble[((unsigned)crc >> 12) ^ ((unsigned)data[i] >> 4)]);
        crc = (uint16_t)(((unsigned)crc << 4) ^ crc16_nibble[((unsigned)crc >> 12) ^ ((unsigned)data[i] & 15u)]);
    }
    return crc;
}

uint32_t edb_crc32(uint32_t crc, const uint8_t *data, size_t n) {
    size_t i;
    crc = ~crc;
    for (i = 0; i < n; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc32_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc32_nibble[crc & 15u];
    }
    return ~crc;
}

size_t edb_sample_bytes(uint8_t format) {
    switch (format) {
    case EDB_FMT_INT16: return 2;
    case EDB_FMT_INT24: return 3;
    case EDB_FMT_FLOAT32: return 4;
    default: return 0;
    }
}

const char *edb_strerror(int code) {
    switch (code) {
    case EDB_OK: return "ok";
    case EDB_E_ARG: return "invalid argument (type, format, channel/sample count, scale or field)";
    case EDB_E_SPACE: return "output buffer too small for the packet";
    case EDB_E_RANGE: return "sample code outside the format's range";
    case EDB_E_NONFINITE: return "non-finite (NaN or Inf) float sample";
    case EDB_E_HEADER_CRC: return "header CRC-16 mismatch";
    case EDB_E_HEADER: return "impossible header field (version, type, format or length)";
    case EDB_E_CRC: return "packet CRC-32 mismatch";
    case EDB_E_PAYLOAD: return "invalid payload (non-finite float, bad device info or unknown command)";
    default: return "unknown error";
    }
}

/* ---- framing ---- */

/* The payload is already at out + EDB_HEADER_BYTES: write the header, both CRCs; return the length. */
static int32_t finish(uint8_t *out, uint8_t type, uint16_t seq, uint32_t ts, uint16_t n_channels, uint8_t format,
                      uint8_t n_samples, uint16_t payload_len, float scale) {
    size_t body = EDB_HEADER_BYTES + (size_t)payload_len;
    out[0] = EDB_SYNC0;
    out[1] = EDB_SYNC1;
    out[2] = EDB_VERSION;
    out[3] = type;
    put16(out + 4, seq);
    put32(out + 6, ts);
    put16(out + 10, n_channels);
    out[12] = format;
    out[13] = n_samples;
    put16(out + 14, payload_len);
    put32(out + 16, f32_bits(scale));
    put16(out + 20, edb_crc16(0xFFFFu, out, EDB_HEADER_BYTES - 2));
    put32(out + body, edb_crc32(0, out, body));
    return (int32_t)(body + EDB_CRC_BYTES);
}

/* Shared checks of data packets; on success *payload_len is set. */
static int data_args(size_t cap, uint8_t type, uint8_t format, float scale, uint16_t n_channels, uint8_t n_samples,
                     uint16_t *payload_len) {
    size_t len;
    if ((type != EDB_RAW && type != EDB_HIGH_GAMMA) || edb_sample_bytes(format) == 0 || n_channels == 0 ||
        n_samples == 0 || !f32_positive(scale))
        return EDB_E_ARG;
    len = (size_t)n_channels * n_samples * edb_sample_bytes(format);
    if (len > EDB_MAX_PAYLOAD) return EDB_E_ARG;
    if (cap < EDB_OVERHEAD_BYTES + len) return EDB_E_SPACE;
    *payload_len = (uint16_t)len;
    return EDB_OK;
}

int32_t edb_frame_ints(uint8_t *out, size_t cap, uint8_t type, uint16_t seq, uint32_t timestamp_us,
                       uint8_t format, float scale, uint16_t n_channels, uint8_t n_samples, const int32_t *codes) {
    uint16_t plen = 0;
    size_t i, n;
    uint8_t *p = out + EDB_HEADER_BYTES;
    int rc;
    if (!out || !codes || format == EDB_FMT_FLOAT32) return EDB_E_ARG;
    rc = data_args(cap, type, format, scale, n_channels, n_samples, &plen);
    if (rc != EDB_OK) return rc;
    n = (size_t)n_channels * n_samples;
    for (i = 0; i < n; i++) {
        int32_t v = codes[i];
        uint32_t u = (uint32_t)v;
        if (format == EDB_FMT_INT16) {
            if (v < -32768 || v > 32767) return EDB_E_RANGE;
            *p++ = (uint8_t)(u & 0xFFu);
            *p++ = (uint8_t)((u >> 8) & 0xFFu);
        } else {
            if (v < -8388608 || v > 8388607) return EDB_E_RANGE;
            *p++ = (uint8_t)(u & 0xFFu);
            *p++ = (uint8_t)((u >> 8) & 0xFFu);
            *p++ = (uint8_t)((u >> 16) & 0xFFu);
        }
    }
    return finish(out, type, seq, timestamp_us, n_channels, format, n_samples, plen, scale);
}

int32_t edb_frame_floats(uint8_t *out, size_t cap, uint8_t type, uint16_t seq, uint32_t timestamp_us, float scale,
                         uint16_t n_channels, uint8_t n_samples, const float *values) {
    uint16_t plen = 0;
    size_t i, n;
    int rc;
    if (!out || !values) return EDB_E_ARG;
    rc = data_args(cap, type, EDB_FMT_FLOAT32, scale, n_channels, n_samples, &plen);
    if (rc != EDB_OK) return rc;
    n = (size_t)n_channels * n_samples;
    for (i = 0; i < n; i++) {
        if (!f32_finite(values[i])) return EDB_E_NONFINITE;
        put32(out + EDB_HEADER_BYTES + 4 * i, f32_bits(values[i]));
    }
    return finish(out, type, seq, timestamp_us, n_channels, EDB_FMT_FLOAT32, n_samples, plen, scale);
}

static int layout_ok(const char *layout) {
    size_t i;
    int ended = 0;
    for (i = 0; i < EDB_LAYOUT_BYTES; i++) {
        unsigned char c = (unsigned char)layout[i];
        if (c == 0) ended = 1;
        else if (ended || c < 32 || c > 126) return 0;
    }
    return 1;
}

static int info_ok(const edb_device_info *info) {
    return info->n_channels >= 1 && f32_positive(info->raw_rate_hz) && f32_positive(info->frame_rate_hz) &&
           edb_sample_bytes(info->raw_format) && edb_sample_bytes(info->hg_format) &&
           info->raw_samples_per_packet >= 1 && info->hg_frames_per_packet >= 1 && f32_positive(info->raw_scale) &&
           f32_positive(info->hg_scale) && layout_ok(info->layout);
}

int32_t edb_frame_device_info(uint8_t *out, size_t cap, uint16_t seq, uint32_t timestamp_us,
                              const edb_device_info *info) {
    uint8_t *p = out + EDB_HEADER_BYTES;
    size_t i;
    if (!out || !info || !info_ok(info)) return EDB_E_ARG;
    if (cap < EDB_OVERHEAD_BYTES + EDB_INFO_PAYLOAD_BYTES) return EDB_E_SPACE;
    put32(p, info->device_id);
    put16(p + 4, info->firmware_version);
    put16(p + 6, info->n_channels);
    put32(p + 8, f32_bits(info->raw_rate_hz));
    put32(p + 12, f32_bits(info->frame_rate_hz));
    p[16] = info->raw_format;
    p[17] = info->hg_format;
    p[18] = info->raw_samples_per_packet;
    p[19] = info->hg_frames_per_packet;
    put32(p + 20, f32_bits(info->raw_scale));
    put32(p + 24, f32_bits(info->hg_scale));
    for (i = 0; i < EDB_LAYOUT_BYTES; i++) p[28 + i] = (uint8_t)info->layout[i];
    return finish(out, EDB_DEVICE_INFO, seq, timestamp_us, 0, 0, 0, EDB_INFO_PAYLOAD_BYTES, 0.0f);
}

int32_t edb_frame_heartbeat(uint8_t *out, size_t cap, uint16_t seq, uint32_t timestamp_us, const edb_heartbeat *hb) {
    uint8_t *p = out + EDB_HEADER_BYTES;
    if (!out || !hb) return EDB_E_ARG;
    if (cap < EDB_OVERHEAD_BYTES + EDB_HEARTBEAT_PAYLOAD_BYTES) return EDB_E_SPACE;
    put32(p, hb->packets_sent);
    put32(p + 4, hb->tx_overruns);
    put16(p + 8, hb->status);
    return finish(out, EDB_HEARTBEAT, seq, timestamp_us, 0, 0, 0, EDB_HEARTBEAT_PAYLOAD_BYTES, 0.0f);
}

int32_t edb_frame_control(uint8_t *out, size_t cap, uint16_t seq, uint32_t timestamp_us, const edb_control *ctrl) {
    uint8_t *p = out + EDB_HEADER_BYTES;
    if (!out || !ctrl || ctrl->command < EDB_CMD_START || ctrl->command > EDB_CMD_SET_STREAMS) return EDB_E_ARG;
    if (cap < EDB_OVERHEAD_BYTES + EDB_CONTROL_PAYLOAD_BYTES) return EDB_E_SPACE;
    p[0] = ctrl->command;
    p[1] = 0;
    put32(p + 2, ctrl->arg);
    return finish(out, EDB_CONTROL, seq, timestamp_us, 0, 0, 0, EDB_CONTROL_PAYLOAD_BYTES, 0.0f);
}

/* ---- decoding ---- */

int edb_decode_header(const uint8_t *p, uint16_t max_payload, edb_header *h) {
    size_t expect;
    if (p[0] != EDB_SYNC0 || p[1] != EDB_SYNC1) return EDB_E_HEADER;
    if (get16(p + 20) != edb_crc16(0xFFFFu, p, EDB_HEADER_BYTES - 2)) return EDB_E_HEADER_CRC;
    h->version = p[2];
    h->type = p[3];
    h->seq = get16(p + 4);
    h->timestamp_us = get32(p + 6);
    h->n_channels = get16(p + 10);
    h->format = p[12];
    h->n_samples = p[13];
    h->payload_len = get16(p + 14);
    h->scale = bits_f32(get32(p + 16));
    if (h->version != EDB_VERSION || h->type < EDB_RAW || h->type > EDB_CONTROL || h->payload_len > max_payload)
        return EDB_E_HEADER;
    if (h->type == EDB_RAW || h->type == EDB_HIGH_GAMMA) {
        if (edb_sample_bytes(h->format) == 0 || h->n_channels == 0 || h->n_samples == 0) return EDB_E_HEADER;
        expect = (size_t)h->n_channels * h->n_samples * edb_sample_bytes(h->format);
        if (expect != h->payload_len || !f32_positive(h->scale)) return EDB_E_HEADER;
        return EDB_OK;
    }
    if (h->n_channels || h->format || h->n_samples || get32(p + 16) != 0) return EDB_E_HEADER;
    expect = h->type == EDB_DEVICE_INFO ? EDB_INFO_PAYLOAD_BYTES
             : h->type == EDB_HEARTBEAT ? EDB_HEARTBEAT_PAYLOAD_BYTES
                                        : EDB_CONTROL_PAYLOAD_BYTES;
    return expect == h->payload_len ? EDB_OK : EDB_E_HEADER;
}

int32_t edb_sample_int(const uint8_t *payload, uint8_t format, size_t i) {
    const uint8_t *p;
    uint32_t u;
    if (format == EDB_FMT_INT16) {
        p = payload + 2 * i;
        u = (uint32_t)p[0] | ((uint32_t)p[1] << 8);
        return (int32_t)(u ^ 0x8000u) - 0x8000;
    }
    p = payload + 3 * i;
    u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16);
    return (int32_t)(u ^ 0x800000u) - 0x800000;
}

float edb_sample_float(const uint8_t *payload, size_t i) { return bits_f32(get32(payload + 4 * i)); }

int edb_decode_device_info(const uint8_t *payload, edb_device_info *info) {
    size_t i;
    info->device_id = get32(payload);
    info->firmware_version = get16(payload + 4);
    info->n_channels = get16(payload + 6);
    info->raw_rate_hz = bits_f32(get32(payload + 8));
    info->frame_rate_hz = bits_f32(get32(payload + 12));
    info->raw_format = payload[16];
    info->hg_format = payload[17];
    info->raw_samples_per_packet = payload[18];
    info->hg_frames_per_packet = payload[19];
    info->raw_scale = bits_f32(get32(payload + 20));
    info->hg_scale = bits_f32(get32(payload + 24));
    for (i = 0; i < EDB_LAYOUT_BYTES; i++) info->layout[i] = (char)payload[28 + i];
    return info_ok(info) ? EDB_OK : EDB_E_PAYLOAD;
}

void edb_decode_heartbeat(const uint8_t *payload, edb_heartbeat *hb) {
    hb->packets_sent = get32(payload);
    hb->tx_overruns = get32(payload + 4);
    hb->status = get16(payload + 8);
}

int edb_decode_control(const uint8_t *payload, edb_control *ctrl) {
    ctrl->command = payload[0];
    ctrl->arg = get32(payload + 2);
    if (ctrl->command < EDB_CMD_START || ctrl->command > EDB_CMD_SET_STREAMS || payload[1] != 0)
        return EDB_E_PAYLOAD;
    return EDB_OK;
}

int edb_check_payload(const edb_header *h, const uint8_t *payload) {
    size_t i, n;
    edb_device_info info;
    edb_control ctrl;
    switch (h->type) {
    case EDB_RAW:
    case EDB_HIGH_GAMMA:
        if (h->format != EDB_FMT_FLOAT32) return EDB_OK;
        n = (size_t)h->n_channels * h->n_samples;
        for (i = 0; i < n; i++)
            if (!f32_finite(edb_sample_float(payload, i))) return EDB_E_PAYLOAD;
        return EDB_OK;
    case EDB_DEVICE_INFO: return edb_decode_device_info(payload, &info);
    case EDB_CONTROL: return edb_decode_control(payload, &ctrl);
    default: return EDB_OK;
    }
}

/* ---- parser ---- */

int edb_parser_init(edb_parser *p, uint8_t *buf, size_t cap) {
    size_t maxp;
    if (!p || !buf || cap < EDB_OVERHEAD_BYTES + EDB_CONTROL_PAYLOAD_BYTES) return EDB_E_ARG;
    memset(p, 0, sizeof *p);
    maxp = cap - EDB_OVERHEAD_BYTES;
    p->buf = buf;
    p->cap = cap;
    p->max_payload = (uint16_t)(maxp > EDB_MAX_PAYLOAD ? EDB_MAX_PAYLOAD : maxp);
    p->in_sync = 1;
    return EDB_OK;
}

size_t edb_parser_buffered(const edb_parser *p) { return p->end - p->start; }

static void discard(edb_parser *p, size_t n) {
    if (n == 0) return;
    if (p->in_sync) {
        p->counters.resyncs++;
        p->in_sync = 0;
    }
    p->counters.bytes_discarded += (uint32_t)n;
    p->start += n;
    p->have_header = 0;
}

/* Apply the resynchronisation rule of PROTOCOL.md to the buffered bytes. */
static void drain(edb_parser *p, edb_packet_fn fn, void *user) {
    while (p->end > p->start) {
        const uint8_t *b = p->buf + p->start;
        size_t len = p->end - p->start, total;
        if (!p->have_header) {
            size_t i = 0;
            while (i + 1 < len && !(b[i] == EDB_SYNC0 && b[i + 1] == EDB_SYNC1)) i++;
            if (i + 1 >= len) { /* no sync word: keep a final first sync byte */
                discard(p, b[len - 1] == EDB_SYNC0 ? len - 1 : len);
                return;
            }
            discard(p, i);
            b = p->buf + p->start;
            len = p->end - p->start;
            if (len < EDB_HEADER_BYTES) return;
            switch (edb_decode_header(b, p->max_payload, &p->header)) {
            case EDB_OK: p->have_header = 1; break;
            case EDB_E_HEADER_CRC:
                p->counters.header_crc_failures++;
                discard(p, 1);
                continue;
            default:
                p->counters.bad_headers++;
                discard(p, 1);
                continue;
            }
        }
        total = EDB_OVERHEAD_BYTES + p->header.payload_len;
        if (len < total) return;
        if (get32(b + total - EDB_CRC_BYTES) != edb_crc32(0, b, total - EDB_CRC_BYTES)) {
            p->counters.crc_failures++;
            discard(p, 1);
            continue;
        }
        if (edb_check_payload(&p->header, b + EDB_HEADER_BYTES) != EDB_OK) {
            p->counters.rejected_payloads++;
            discard(p, total); /* CRC-valid: the sender's bytes, skip the whole packet */
            continue;
        }
        p->counters.packets_ok++;
        p->in_sync = 1;
        p->have_header = 0;
        p->start += total;
        if (fn) fn(user, &p->header, b + EDB_HEADER_BYTES, b, total);
    }
}

void edb_parser_feed(edb_parser *p, const uint8_t *data, size_t n, edb_packet_fn fn, void *user) {
    p->counters.bytes += (uint32_t)n;
    while (n > 0) {
        size_t room, take;
        if (p->start > 0 && (p->start == p->end || p->end == p->cap)) { /* compact */
            memmove(p->buf, p->buf + p->start, p->end - p->start);
            p->end -= p->start;
            p->start = 0;
        }
        room = p->cap - p->end;
        take = n < room ? n : room;
        memcpy(p->buf + p->end, data, take);
        p->end += take;
        data += take;
        n -= take;
        drain(p, fn, user);
    }
}
