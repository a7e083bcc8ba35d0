/*
 * edbridge_tool: the C framer and parser on the command line (used by the cross-language tests).
 *
 *   edbridge_tool frame [FILE]          packets described as text (FILE or stdin) -> framed bytes on stdout
 *   edbridge_tool parse [CHUNK [CAP]]   bytes on stdin, fed CHUNK bytes at a time to a parser with a CAP-byte
 *                                       buffer -> one text block per accepted packet, then the counters
 *   edbridge_tool bench NCH NSAMPLES FORMAT PACKETS
 *                                       CPU time to frame and to parse PACKETS data packets (in memory)
 *
 * Text description of packets (whitespace-separated tokens; floats in any strtod form, hex floats exact):
 *   raw|hg SEQ TS FORMAT SCALE NCH NSAMPLES v[0] .. v[NCH*NSAMPLES-1]   (FORMAT int16|int24|float32)
 *   info SEQ TS DEVICE_ID FIRMWARE NCH RAW_RATE FRAME_RATE RAW_FMT HG_FMT RAW_SPP HG_FPP RAW_SCALE HG_SCALE LAYOUT
 *   heartbeat SEQ TS PACKETS_SENT TX_OVERRUNS STATUS
 *   control SEQ TS COMMAND ARG
 * LAYOUT "-" is the empty layout.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edbridge.h"

#define MAX_VALUES (EDB_MAX_PAYLOAD / 2)

static uint8_t g_packet[EDB_MAX_PACKET];
static int32_t g_codes[MAX_VALUES];
static float g_values[MAX_VALUES];
static uint8_t g_parse_buf[EDB_MAX_PACKET];
static uint8_t g_chunk[1 << 16];

static int token(FILE *in, char *tok, size_t n) {
    char fmt[16];
    sprintf(fmt, "%%%lus", (unsigned long)(n - 1));
    return fscanf(in, fmt, tok) == 1;
}

static int read_long(FILE *in, long long lo, long long hi, long long *out) {
    char tok[128], *end;
    long long v;
    if (!token(in, tok, sizeof tok)) return 0;
    errno = 0;
    v = strtoll(tok, &end, 0);
    if (errno || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static int read_float(FILE *in, float *out) {
    char tok[128], *end;
    double v;
    if (!token(in, tok, sizeof tok)) return 0;
    v = strtod(tok, &end);
    if (*end) return 0;
    *out = (float)v;
    return 1;
}

static int read_format(FILE *in, uint8_t *fmt) {
    char tok[32];
    if (!token(in, tok, sizeof tok)) return 0;
    if (!strcmp(tok, "int16")) *fmt = EDB_FMT_INT16;
    else if (!strcmp(tok, "int24")) *fmt = EDB_FMT_INT24;
    else if (!strcmp(tok, "float32")) *fmt = EDB_FMT_FLOAT32;
    else *fmt = (uint8_t)atoi(tok);
    return 1;
}

static int frame(FILE *in) {
    char kind[32];
    long npk = 0;
    while (token(in, kind, sizeof kind)) {
        long long seq, ts, a, b, c;
        int32_t len = EDB_E_ARG;
        npk++;
        if (!read_long(in, 0, 65535, &seq) || !read_long(in, 0, 4294967295LL, &ts)) goto bad_input;
        if (!strcmp(kind, "raw") || !strcmp(kind, "hg")) {
            uint8_t type = kind[0] == 'r' ? EDB_RAW : EDB_HIGH_GAMMA, fmt;
            float scale;
            long long nch, ns, i, n;
            if (!read_format(in, &fmt) || !read_float(in, &scale) || !read_long(in, 0, 65535, &nch) ||
                !read_long(in, 0, 255, &ns))
                goto bad_input;
            n = nch * ns;
            if (n > MAX_VALUES) {
                fprintf(stderr, "packet %ld: %lld values exceed the largest payload\n", npk, n);
                return 1;
            }
            for (i = 0; i < n; i++) {
                if (fmt == EDB_FMT_FLOAT32) {
                    if (!read_float(in, &g_values[i])) goto bad_input;
                } else {
                    if (!read_long(in, -2147483647LL - 1, 2147483647LL, &a)) goto bad_input;
                    g_codes[i] = (int32_t)a;
                }
            }
            if (fmt == EDB_FMT_FLOAT32)
                len = edb_frame_floats(g_packet, sizeof g_packet, type, (uint16_t)seq, (uint32_t)ts, scale,
                                       (uint16_t)nch, (uint8_t)ns, g_values);
            else
                len = edb_frame_ints(g_packet, sizeof g_packet, type, (uint16_t)seq, (uint32_t)ts, fmt, scale,
                                     (uint16_t)nch, (uint8_t)ns, g_codes);
        } else if (!strcmp(kind, "info")) {
            edb_device_info info;
            char layout[64];
            long long v[8];
            memset(&info, 0, sizeof info);
            if (!read_long(in, 0, 4294967295LL, &v[0]) || !read_long(in, 0, 65535, &v[1]) ||
                !read_long(in, 0, 65535, &v[2]) || !read_float(in, &info.raw_rate_hz) ||
                !read_float(in, &info.frame_rate_hz) || !read_format(in, &info.raw_format) ||
                !read_format(in, &info.hg_format) || !read_long(in, 0, 255, &v[3]) || !read_long(in, 0, 255, &v[4]) ||
                !read_float(in, &info.raw_scale) || !read_float(in, &info.hg_scale) ||
                !token(in, layout, sizeof layout))
                goto bad_input;
            info.device_id = (uint32_t)v[0];
            info.firmware_version = (uint16_t)v[1];
            info.n_channels = (uint16_t)v[2];
            info.raw_samples_per_packet = (uint8_t)v[3];
            info.hg_frames_per_packet = (uint8_t)v[4];
            if (strcmp(layout, "-")) {
                if (strlen(layout) > EDB_LAYOUT_BYTES) goto bad_input;
                memcpy(info.layout, layout, strlen(layout));
            }
            len = edb_frame_device_info(g_packet, sizeof g_packet, (uint16_t)seq, (uint32_t)ts, &info);
        } else if (!strcmp(kind, "heartbeat")) {
            edb_heartbeat hb;
            if (!read_long(in, 0, 4294967295LL, &a) || !read_long(in, 0, 4294967295LL, &b) ||
                !read_long(in, 0, 65535, &c))
                goto bad_input;
            hb.packets_sent = (uint32_t)a;
            hb.tx_overruns = (uint32_t)b;
            hb.status = (uint16_t)c;
            len = edb_frame_heartbeat(g_packet, sizeof g_packet, (uint16_t)seq, (uint32_t)ts, &hb);
        } else if (!strcmp(kind, "control")) {
            edb_control ctrl;
            if (!read_long(in, 0, 255, &a) || !read_long(in, 0, 4294967295LL, &b)) goto bad_input;
            ctrl.command = (uint8_t)a;
            ctrl.arg = (uint32_t)b;
            len = edb_frame_control(g_packet, sizeof g_packet, (uint16_t)seq, (uint32_t)ts, &ctrl);
        } else {
            fprintf(stderr, "packet %ld: unknown packet kind '%s' (raw, hg, info, heartbeat, control)\n", npk, kind);
            return 1;
        }
        if (len < 0) {
            fprintf(stderr, "packet %ld: %s\n", npk, edb_strerror(len));
            return 1;
        }
        if (fwrite(g_packet, 1, (size_t)len, stdout) != (size_t)len) return 1;
        continue;
    bad_input:
        fprintf(stderr, "packet %ld (%s): missing or malformed field\n", npk, kind);
        return 1;
    }
    return 0;
}

static void on_packet(void *user, const edb_header *h, const uint8_t *payload, const uint8_t *packet,
                      size_t len) {
    size_t i, n;
    (void)user;
    printf("packet ");
    for (i = 0; i < len; i++) printf("%02x", packet[i]);
    printf("\nheader %u %u %lu %u %u %u %a\n", h->type, h->seq, (unsigned long)h->timestamp_us, h->n_channels,
           h->format, h->n_samples, (double)h->scale);
    if (h->type == EDB_RAW || h->type == EDB_HIGH_GAMMA) {
        n = (size_t)h->n_channels * h->n_samples;
        printf("values");
        for (i = 0; i < n; i++) {
            if (h->format == EDB_FMT_FLOAT32) printf(" %a", (double)edb_sample_float(payload, i));
            else printf(" %ld", (long)edb_sample_int(payload, h->format, i));
        }
        printf("\n");
    } else if (h->type == EDB_DEVICE_INFO) {
        edb_device_info d;
        char layout[EDB_LAYOUT_BYTES + 1];
        edb_decode_device_info(payload, &d);
        memcpy(layout, d.layout, EDB_LAYOUT_BYTES);
        layout[EDB_LAYOUT_BYTES] = 0;
        printf("info %lu %u %u %a %a %u %u %u %u %a %a %s\n", (unsigned long)d.device_id, d.firmware_version,
               d.n_channels, (double)d.raw_rate_hz, (double)d.frame_rate_hz, d.raw_format, d.hg_format,
               d.raw_samples_per_packet, d.hg_frames_per_packet, (double)d.raw_scale, (double)d.hg_scale,
               layout[0] ? layout : "-");
    } else if (h->type == EDB_HEARTBEAT) {
        edb_heartbeat hb;
        edb_decode_heartbeat(payload, &hb);
        printf("heartbeat %lu %lu %u\n", (unsigned long)hb.packets_sent, (unsigned long)hb.tx_overruns, hb.status);
    } else {
        edb_control c;
        edb_decode_control(payload, &c);
        printf("control %u %lu\n", c.command, (unsigned long)c.arg);
    }
}

static int parse(size_t chunk, size_t cap) {
    edb_parser p;
    size_t got;
    const edb_counters *c = &p.counters;
    if (chunk < 1 || chunk > sizeof g_chunk || edb_parser_init(&p, g_parse_buf, cap) != EDB_OK) {
        fprintf(stderr, "parse: CHUNK must be 1..%lu and CAP %lu..%lu\n", (unsigned long)sizeof g_chunk,
                (unsigned long)(EDB_OVERHEAD_BYTES + EDB_CONTROL_PAYLOAD_BYTES), (unsigned long)sizeof g_parse_buf);
        return 2;
    }
    while ((got = fread(g_chunk, 1, chunk, stdin)) > 0) edb_parser_feed(&p, g_chunk, got, on_packet, NULL);
    printf("counters bytes=%lu packets_ok=%lu header_crc_failures=%lu crc_failures=%lu bad_headers=%lu "
           "rejected_payloads=%lu resyncs=%lu bytes_discarded=%lu buffered=%lu\n",
           (unsigned long)c->bytes, (unsigned long)c->packets_ok, (unsigned long)c->header_crc_failures,
           (unsigned long)c->crc_failures, (unsigned long)c->bad_headers, (unsigned long)c->rejected_payloads,
           (unsigned long)c->resyncs, (unsigned long)c->bytes_discarded, (unsigned long)edb_parser_buffered(&p));
    return 0;
}

static void count_packet(void *user, const edb_header *h, const uint8_t *payload, const uint8_t *packet,
                         size_t len) {
    (void)h;
    (void)payload;
    (void)packet;
    *(size_t *)user += len;
}

static int bench(long nch, long ns, uint8_t fmt, long packets) {
    static uint8_t stream[1 << 22];
    size_t n = 0, fed = 0, parsed = 0, i, size;
    long k, j, fit;
    clock_t t0, t1, t2;
    edb_parser p;
    if (nch < 1 || ns < 1 || ns > 255 || nch * ns > (long)MAX_VALUES || !edb_sample_bytes(fmt) || packets < 1) {
        fprintf(stderr, "bench: bad arguments\n");
        return 2;
    }
    size = EDB_OVERHEAD_BYTES + (size_t)(nch * ns) * edb_sample_bytes(fmt);
    fit = (long)(sizeof stream / size);
    for (j = 0; j < nch * ns; j++) {
        g_codes[j] = (int32_t)((j * 7919) % 60001) - 30000;
        g_values[j] = (float)g_codes[j];
    }
    t0 = clock();
    for (k = 0; k < packets; k++) { /* frames into the buffer, reusing it when full */
        int32_t len;
        if (k % fit == 0) n = 0;
        len = fmt == EDB_FMT_FLOAT32
                  ? edb_frame_floats(stream + n, sizeof stream - n, EDB_RAW, (uint16_t)k, (uint32_t)k, 1.0f,
                                     (uint16_t)nch, (uint8_t)ns, g_values)
                  : edb_frame_ints(stream + n, sizeof stream - n, EDB_RAW, (uint16_t)k, (uint32_t)k, fmt, 0.195f,
                                   (uint16_t)nch, (uint8_t)ns, g_codes);
        if (len < 0) return 1;
        n += (size_t)len;
    }
    n = (size_t)(packets < fit ? packets : fit) * size;
    t1 = clock();
    edb_parser_init(&p, g_parse_buf, sizeof g_parse_buf);
    while (fed < (size_t)packets * size) { /* parses the buffer again until as many packets were fed */
        for (i = 0; i < n; i += 4096) edb_parser_feed(&p, stream + i, n - i < 4096 ? n - i : 4096, count_packet, &parsed);
        fed += n;
    }
    t2 = clock();
    printf("bench: %ld packets of %lu bytes: frame %.1f MB/s, parse %.1f MB/s (%lu packets accepted)\n", packets,
           (unsigned long)size, (double)packets * (double)size / ((double)(t1 - t0) / CLOCKS_PER_SEC) / 1e6,
           (double)fed / ((double)(t2 - t1) / CLOCKS_PER_SEC) / 1e6, (unsigned long)p.counters.packets_ok);
    return parsed == fed ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "frame")) {
        FILE *in = stdin;
        int rc;
        if (argc >= 3 && !(in = fopen(argv[2], "r"))) {
            fprintf(stderr, "frame: cannot open %s\n", argv[2]);
            return 2;
        }
        rc = frame(in);
        if (in != stdin) fclose(in);
        return rc;
    }
    if (argc >= 2 && !strcmp(argv[1], "parse")) {
        size_t chunk = argc >= 3 ? (size_t)strtoul(argv[2], NULL, 10) : 4096;
        size_t cap = argc >= 4 ? (size_t)strtoul(argv[3], NULL, 10) : sizeof g_parse_buf;
        return parse(chunk, cap);
    }
    if (argc >= 6 && !strcmp(argv[1], "bench")) {
        FILE *f = tmpfile();
        uint8_t fmt = 0;
        int rc;
        if (!f) return 2;
        fputs(argv[4], f);
        rewind(f);
        rc = read_format(f, &fmt);
        fclose(f);
        if (!rc) return 2;
        return bench(strtol(argv[2], NULL, 10), strtol(argv[3], NULL, 10), fmt, strtol(argv[5], NULL, 10));
    }
    fprintf(stderr, "usage: %s frame [FILE] | parse [CHUNK [CAP]] | bench NCH NSAMPLES FORMAT PACKETS\n", argv[0]);
    return 2;
}
