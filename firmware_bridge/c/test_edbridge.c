/* C-only tests of edbridge: CRC check values, the PROTOCOL.md example packet, framer refusals, decoding,
 * and the parser's resynchronisation rule with a small caller buffer. Prints "N passed, M failed". */
#include <stdio.h>
#include <string.h>

#include "edbridge.h"

static int g_pass, g_fail;

#define CHECK(cond)                                                                                              \
    do {                                                                                                         \
        if (cond) g_pass++;                                                                                      \
        else {                                                                                                   \
            g_fail++;                                                                                            \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                               \
        }                                                                                                        \
    } while (0)

typedef struct {
    int n;
    uint16_t seqs[64];
    size_t lens[64];
} seen_t;

static void collect(void *user, const edb_header *h, const uint8_t *payload, const uint8_t *packet, size_t len) {
    seen_t *s = (seen_t *)user;
    (void)payload;
    (void)packet;
    if (s->n < 64) {
        s->seqs[s->n] = h->seq;
        s->lens[s->n] = len;
    }
    s->n++;
}

static void test_crc(void) {
    const uint8_t check[] = "123456789";
    CHECK(edb_crc16(0xFFFFu, check, 9) == 0x29B1u);
    CHECK(edb_crc32(0, check, 9) == 0xCBF43926u);
    CHECK(edb_crc32(edb_crc32(0, check, 4), check + 4, 5) == 0xCBF43926u); /* chaining */
}

static void test_example_packet(void) {
    static const uint8_t want[38] = {0xeb, 0x90, 0x01, 0x01, 0x07, 0x00, 0x40, 0xe2, 0x01, 0x00, 0x03, 0x00, 0x01,
                                     0x02, 0x0c, 0x00, 0x14, 0xae, 0x47, 0x3e, 0x39, 0xf7, 0x64, 0x00, 0x9c, 0xff,
                                     0x00, 0x00, 0xff, 0x7f, 0x00, 0x80, 0x01, 0x00, 0x0f, 0x5c, 0xc0, 0x02};
    const int32_t codes[6] = {100, -100, 0, 32767, -32768, 1};
    uint8_t out[64];
    edb_header h;
    int32_t n = edb_frame_ints(out, sizeof out, EDB_RAW, 7, 123456u, EDB_FMT_INT16, 0.195f, 3, 2, codes);
    CHECK(n == 38 && memcmp(out, want, 38) == 0);
    CHECK(edb_decode_header(out, EDB_MAX_PAYLOAD, &h) == EDB_OK);
    CHECK(h.seq == 7 && h.timestamp_us == 123456u && h.n_channels == 3 && h.n_samples == 2 && h.payload_len == 12);
    CHECK(edb_sample_int(out + EDB_HEADER_BYTES, EDB_FMT_INT16, 4) == -32768);
    out[3] = 9; /* a header byte changed: the header CRC catches it */
    CHECK(edb_decode_header(out, EDB_MAX_PAYLOAD, &h) == EDB_E_HEADER_CRC);
}

static void test_framer_refusals(void) {
    uint8_t out[128];
    int32_t big[2] = {8388608, 0}, small[2] = {-32769, 0}, ok[2] = {1, 2};
    float nanv[2], inf_scale;
    uint32_t nan_bits = 0x7fc00000u, inf_bits = 0x7f800000u;
    edb_control bad_cmd = {9, 0};
    edb_device_info info;
    memcpy(&nanv[0], &nan_bits, 4);
    nanv[1] = 1.0f;
    memcpy(&inf_scale, &inf_bits, 4);
    CHECK(edb_frame_ints(out, sizeof out, EDB_RAW, 0, 0, EDB_FMT_INT24, 1.0f, 2, 1, big) == EDB_E_RANGE);
    CHECK(edb_frame_ints(out, sizeof out, EDB_RAW, 0, 0, EDB_FMT_INT16, 1.0f, 2, 1, small) == EDB_E_RANGE);
    CHECK(edb_frame_floats(out, sizeof out, EDB_RAW, 0, 0, 1.0f, 2, 1, nanv) == EDB_E_NONFINITE);
    CHECK(edb_frame_ints(out, sizeof out, EDB_RAW, 0, 0, EDB_FMT_INT16, inf_scale, 2, 1, ok) == EDB_E_ARG);
    CHECK(edb_frame_ints(out, sizeof out, EDB_RAW, 0, 0, EDB_FMT_INT16, 0.0f, 2, 1, ok) == EDB_E_ARG);
    CHECK(edb_frame_ints(out, sizeof out, EDB_CONTROL, 0, 0, EDB_FMT_INT16, 1.0f, 2, 1, ok) == EDB_E_ARG);
    CHECK(edb_frame_ints(out, sizeof out, EDB_RAW, 0, 0, 7, 1.0f, 2, 1, ok) == EDB_E_ARG);
    CHECK(edb_frame_ints(out, sizeof out, EDB_RAW, 0, 0, EDB_FMT_INT16, 1.0f, 0, 1, ok) == EDB_E_ARG);
    CHECK(edb_frame_ints(out, 29, EDB_RAW, 0, 0, EDB_FMT_INT16, 1.0f, 2, 1, ok) == EDB_E_SPACE);
    CHECK(edb_frame_ints(out, 30, EDB_RAW, 0, 0, EDB_FMT_INT16, 1.0f, 2, 1, ok) == 30);
    CHECK(edb_frame_control(out, sizeof out, 0, 0, &bad_cmd) == EDB_E_ARG);
    memset(&info, 0, sizeof info);
    CHECK(edb_frame_device_info(out, sizeof out, 0, 0, &info) == EDB_E_ARG); /* zero channels, rates */
    CHECK(strcmp(edb_strerror(EDB_E_RANGE), "sample code outside the format's range") == 0);
}

static void test_round_trip_other_types(void) {
    uint8_t out[128];
    edb_device_info info, back;
    edb_heartbeat hb = {123, 4, 3}, hb2;
    edb_control c = {EDB_CMD_SET_STREAMS, 3}, c2;
    edb_header h;
    int32_t n;
    memset(&info, 0, sizeof info);
    info.device_id = 0xC0FFEEu;
    info.firmware_version = 3;
    info.n_channels = 64;
    info.raw_rate_hz = 1000.0f;
    info.frame_rate_hz = 125.0f;
    info.raw_format = EDB_FMT_INT16;
    info.hg_format = EDB_FMT_INT16;
    info.raw_samples_per_packet = 8;
    info.hg_frames_per_packet = 1;
    info.raw_scale = 0.195f;
    info.hg_scale = 1.0f / 256.0f;
    memcpy(info.layout, "ld8x8", 5);
    n = edb_frame_device_info(out, sizeof out, 0, 0, &info);
    CHECK(n == 70 && edb_decode_header(out, EDB_MAX_PAYLOAD, &h) == EDB_OK && h.type == EDB_DEVICE_INFO);
    CHECK(edb_decode_device_info(out + EDB_HEADER_BYTES, &back) == EDB_OK && memcmp(&back, &info, sizeof info) == 0);
    out[EDB_HEADER_BYTES + 28 + 2] = 1; /* a control character in the layout */
    CHECK(edb_decode_device_info(out + EDB_HEADER_BYTES, &back) == EDB_E_PAYLOAD);
    n = edb_frame_heartbeat(out, sizeof out, 1, 2, &hb);
    edb_decode_heartbeat(out + EDB_HEADER_BYTES, &hb2);
    CHECK(n == 36 && hb2.packets_sent == 123 && hb2.tx_overruns == 4 && hb2.status == 3);
    n = edb_frame_control(out, sizeof out, 1, 2, &c);
    CHECK(n == 32 && edb_decode_control(out + EDB_HEADER_BYTES, &c2) == EDB_OK && c2.command == c.command &&
          c2.arg == 3);
}

static void test_parser(void) {
    static uint8_t stream[4096];
    uint8_t buf[EDB_OVERHEAD_BYTES + 64], tiny[8];
    edb_parser p;
    seen_t seen;
    size_t n = 0, i;
    int32_t codes[32];
    int32_t len;
    for (i = 0; i < 32; i++) codes[i] = (int32_t)i * 1000 - 16000;
    CHECK(edb_parser_init(&p, tiny, sizeof tiny) == EDB_E_ARG);
    CHECK(edb_parser_init(&p, buf, sizeof buf) == EDB_OK && p.max_payload == 64);
    /* garbage, 3 packets, a packet too big for this parser (96-byte payload), a packet with a flipped payload
     * bit, a lone first sync byte, 1 packet; the last three faults are one run of discarded bytes */
    memcpy(stream, "\x00\xeb\x13garbage\xeb", 11);
    n = 11;
    for (i = 0; i < 3; i++) {
        len = edb_frame_ints(stream + n, sizeof stream - n, EDB_RAW, (uint16_t)i, 0, EDB_FMT_INT16, 1.0f, 4, 8, codes);
        n += (size_t)len;
    }
    len = edb_frame_ints(stream + n, sizeof stream - n, EDB_RAW, 3, 0, EDB_FMT_INT24, 1.0f, 4, 8, codes);
    n += (size_t)len;
    len = edb_frame_ints(stream + n, sizeof stream - n, EDB_RAW, 4, 0, EDB_FMT_INT16, 1.0f, 2, 8, codes);
    stream[n + 30] ^= 0x04;
    n += (size_t)len;
    stream[n++] = EDB_SYNC0;
    len = edb_frame_ints(stream + n, sizeof stream - n, EDB_HIGH_GAMMA, 5, 0, EDB_FMT_INT16, 1.0f, 1, 1, codes);
    n += (size_t)len;
    memset(&seen, 0, sizeof seen);
    for (i = 0; i < n; i += 7) edb_parser_feed(&p, stream + i, n - i < 7 ? n - i : 7, collect, &seen);
    CHECK(seen.n == 4 && seen.seqs[0] == 0 && seen.seqs[1] == 1 && seen.seqs[2] == 2 && seen.seqs[3] == 5);
    CHECK(p.counters.packets_ok == 4 && p.counters.bytes == n);
    CHECK(p.counters.bad_headers == 1 && p.counters.crc_failures == 1 && p.counters.resyncs == 2);
    CHECK(p.counters.bytes_discarded + 3 * 90 + 28 == n && edb_parser_buffered(&p) == 0);
}

int main(void) {
    test_crc();
    test_example_packet();
    test_framer_refusals();
    test_round_trip_other_types();
    test_parser();
    printf("edbridge tests: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
