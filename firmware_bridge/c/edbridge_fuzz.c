/*
 * edbridge_fuzz SEED ITERATIONS: seeded random mutations of valid packet streams through the C parser.
 *
 * Each iteration frames 1..30 random packets (all types and formats, sequence number = index), then flips
 * bits, deletes bytes, inserts random bytes or copies of real headers (false headers whose length is never
 * followed), overwrites runs and truncates, and feeds the result in random chunk sizes to a parser with a
 * random buffer size. Every 8th iteration feeds random bytes only. Checked on every iteration:
 *   - every accepted packet is byte-for-byte one that was framed (no corrupted packet is ever accepted),
 *     and accepted packets come in stream order;
 *   - every packet no mutation touched (and that fits the parser's buffer) is delivered;
 *   - bytes fed = bytes discarded + bytes delivered + bytes still buffered, and packets_ok = deliveries.
 * Prints "fuzz: N iterations, ... 0 failures" and exits 1 on any failure (build it with sanitizers).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edbridge.h"

#define MAX_K 30
#define ORIG_CAP (1u << 17)
#define MUT_CAP (1u << 18)

static uint64_t g_rng;
static uint8_t g_orig[ORIG_CAP], g_mut[MUT_CAP + EDB_MAX_PACKET], g_pbuf[EDB_MAX_PACKET];
static uint8_t g_flip[ORIG_CAP], g_del[ORIG_CAP];
static uint8_t g_ins_len[ORIG_CAP + 1];
static uint32_t g_ins_src[ORIG_CAP + 1];
static int32_t g_codes[EDB_MAX_PAYLOAD / 2];
static float g_vals[EDB_MAX_PAYLOAD / 4];

static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint32_t below(uint32_t n) { return (uint32_t)(rnd() % n); }

typedef struct {
    size_t off[MAX_K], len[MAX_K];
    int k;
    int delivered[MAX_K];
    int last_seq;
    size_t delivered_bytes;
    uint32_t n_delivered;
    long failures;
} state_t;

static void on_packet(void *user, const edb_header *h, const uint8_t *payload, const uint8_t *packet, size_t len) {
    state_t *s = (state_t *)user;
    (void)payload;
    if (h->seq >= s->k || s->len[h->seq] != len || memcmp(g_orig + s->off[h->seq], packet, len) != 0) {
        printf("FAIL: accepted a packet that was not sent (seq %u, %lu bytes)\n", h->seq, (unsigned long)len);
        s->failures++;
        return;
    }
    if ((int)h->seq <= s->last_seq || s->delivered[h->seq]) {
        printf("FAIL: packet %u delivered out of order or twice (last %d, twice %d)\n", h->seq, s->last_seq, s->delivered[h->seq]);
        s->failures++;
    }
    s->last_seq = h->seq;
    s->delivered[h->seq] = 1;
    s->delivered_bytes += len;
    s->n_delivered++;
}

static int32_t random_packet(uint8_t *out, size_t cap, uint16_t seq) {
    uint32_t ts = (uint32_t)rnd();
    uint32_t kind = below(10), i, n;
    if (kind < 6) {
        uint8_t fmt = (uint8_t)(1 + below(3)), type = kind < 4 ? EDB_RAW : EDB_HIGH_GAMMA, ns;
        uint16_t nch = (uint16_t)(below(20) == 0 ? 1 + below(2048) : 1 + below(64));
        size_t per = (size_t)nch * edb_sample_bytes(fmt);
        ns = (uint8_t)(1 + below(8));
        while ((size_t)ns * per > EDB_MAX_PAYLOAD && ns > 1) ns--;
        if ((size_t)ns * per > EDB_MAX_PAYLOAD) nch = (uint16_t)(EDB_MAX_PAYLOAD / edb_sample_bytes(fmt));
        n = (uint32_t)nch * ns;
        if (fmt == EDB_FMT_FLOAT32) {
            for (i = 0; i < n; i++) {
                uint32_t bits = (uint32_t)rnd();
                if (((bits >> 23) & 0xFFu) == 0xFFu) bits &= ~(1u << 30); /* keep it finite */
                memcpy(&g_vals[i], &bits, 4);
            }
            return edb_frame_floats(out, cap, type, seq, ts, 1.0f, nch, ns, g_vals);
        }
        for (i = 0; i < n; i++)
            g_codes[i] = fmt == EDB_FMT_INT16 ? (int32_t)below(65536) - 32768 : (int32_t)below(1u << 24) - 8388608;
        return edb_frame_ints(out, cap, type, seq, ts, fmt, 0.195f, nch, ns, g_codes);
    }
    if (kind < 7) {
        edb_device_info d;
        memset(&d, 0, sizeof d);
        d.device_id = (uint32_t)rnd();
        d.n_channels = (uint16_t)(1 + below(256));
        d.raw_rate_hz = 1000.0f;
        d.frame_rate_hz = 125.0f;
        d.raw_format = (uint8_t)(1 + below(3));
        d.hg_format = (uint8_t)(1 + below(3));
        d.raw_samples_per_packet = 8;
        d.hg_frames_per_packet = 1;
        d.raw_scale = 0.195f;
        d.hg_scale = 1.0f;
        memcpy(d.layout, "hb128", 5);
        return edb_frame_device_info(out, cap, seq, ts, &d);
    }
    if (kind < 9) {
        edb_heartbeat hb;
        hb.packets_sent = (uint32_t)rnd();
        hb.tx_overruns = (uint32_t)rnd();
        hb.status = (uint16_t)rnd();
        return edb_frame_heartbeat(out, cap, seq, ts, &hb);
    }
    {
        edb_control c;
        c.command = (uint8_t)(1 + below(4));
        c.arg = (uint32_t)rnd();
        return edb_frame_control(out, cap, seq, ts, &c);
    }
}

static long one_iteration(long it) {
    static state_t s;
    edb_parser p;
    size_t n = 0, m = 0, i, cut, cap;
    int j, nmut;
    memset(&s, 0, sizeof s);
    s.last_seq = -1;
    cap = below(3) == 0 ? EDB_MAX_PACKET : EDB_OVERHEAD_BYTES + 64 + below(4096);
    if (edb_parser_init(&p, g_pbuf, cap) != EDB_OK) return 1;

    if (it % 8 == 7) { /* random bytes only */
        n = below(1u << 16);
        for (i = 0; i < n; i++) g_mut[i] = (uint8_t)rnd();
        s.k = 0;
        edb_parser_feed(&p, g_mut, n, on_packet, &s);
        if (p.counters.packets_ok || p.counters.bytes_discarded + edb_parser_buffered(&p) != n) {
            printf("FAIL: random bytes gave %lu packets\n", (unsigned long)p.counters.packets_ok);
            return 1;
        }
        return 0;
    }

    s.k = 1 + (int)below(MAX_K);
    for (j = 0; j < s.k; j++) {
        int32_t len = random_packet(g_orig + n, ORIG_CAP - n, (uint16_t)j);
        if (len <= 0) {
            printf("FAIL: framer refused a valid random packet (%s)\n", edb_strerror(len));
            return 1;
        }
        s.off[j] = n;
        s.len[j] = (size_t)len;
        n += (size_t)len;
    }
    /* mutations, recorded per original byte */
    memset(g_flip, 0, n);
    memset(g_del, 0, n);
    memset(g_ins_len, 0, n + 1);
    cut = n;
    nmut = (int)below(9);
    for (j = 0; j < nmut; j++) {
        size_t pos = below((uint32_t)n), run, r;
        switch (below(6)) {
        case 0: g_flip[pos] ^= (uint8_t)(1u << below(8)); break;
        case 1:
            run = 1 + below(40);
            for (r = pos; r < n && r < pos + run; r++) g_del[r] = 1;
            break;
        case 2: /* random bytes, or a copy of a real header (a valid false header) */
            if (below(2)) { /* at most 26 bytes: 6 short of the smallest packet, so never a whole copy */
                g_ins_len[pos] = (uint8_t)(2 + below(25));
                g_ins_src[pos] = (uint32_t)s.off[below((uint32_t)s.k)];
            } else {
                g_ins_len[pos] = (uint8_t)(1 + below(60));
                g_ins_src[pos] = 0xFFFFFFFFu;
            }
            break;
        case 3:
            run = 1 + below(64);
            for (r = pos; r < n && r < pos + run; r++) g_flip[r] = (uint8_t)(1 + below(255));
            break;
        case 4:
            if (below(3) == 0) cut = pos;
            break;
        default: g_flip[pos] ^= 0x80u; break;
        }
    }
    for (i = 0; i <= n && i <= cut; i++) {
        if (g_ins_len[i]) {
            size_t r;
            for (r = 0; r < g_ins_len[i]; r++)
                g_mut[m++] = g_ins_src[i] == 0xFFFFFFFFu ? (uint8_t)rnd() : g_orig[(g_ins_src[i] + r) % n];
        }
        if (i < n && i < cut && !g_del[i]) g_mut[m++] = (uint8_t)(g_orig[i] ^ g_flip[i]);
    }
    memset(g_mut + m, 0, cap); /* zero padding resolves a wait on a false header's length */
    m += cap;
    /* feed in random chunks */
    for (i = 0; i < m;) {
        size_t c = 1 + below(below(4) == 0 ? 3 : 700);
        if (c > m - i) c = m - i;
        edb_parser_feed(&p, g_mut + i, c, on_packet, &s);
        i += c;
    }
    for (j = 0; j < s.k; j++) {
        size_t r, a = s.off[j], b = s.off[j] + s.len[j];
        int intact = b <= cut && s.len[j] <= EDB_OVERHEAD_BYTES + p.max_payload;
        for (r = a; r < b && intact; r++)
            if (g_flip[r] || g_del[r] || (r > a && g_ins_len[r])) intact = 0;
        if (intact && !s.delivered[j]) {
            printf("FAIL: iteration %ld: intact packet %d (%lu bytes) was not delivered\n", it, j,
                   (unsigned long)s.len[j]);
            s.failures++;
        }
    }
    if (p.counters.bytes != m || p.counters.bytes_discarded + s.delivered_bytes + edb_parser_buffered(&p) != m ||
        p.counters.packets_ok != s.n_delivered) {
        printf("FAIL: iteration %ld: counters do not add up\n", it);
        s.failures++;
    }
    return s.failures;
}

int main(int argc, char **argv) {
    long iters, it, failures = 0;
    if (argc < 3) {
        fprintf(stderr, "usage: %s SEED ITERATIONS\n", argv[0]);
        return 2;
    }
    g_rng = strtoull(argv[1], NULL, 10);
    iters = strtol(argv[2], NULL, 10);
    for (it = 0; it < iters; it++) failures += one_iteration(it);
    printf("fuzz: %ld iterations, %ld failures\n", iters, failures);
    return failures ? 1 : 0;
}
