/*
 * edbridge: the serial bridge protocol (firmware_bridge/PROTOCOL.md, version 1) in portable C99.
 *
 * Device side: framers that write one packet into a caller's buffer. Both sides: an incremental parser with
 * the resynchronisation rule and counters of the Python StreamParser. No dynamic allocation, no libc beyond
 * <string.h>; all multi-byte fields are little-endian whatever the host byte order. float is IEEE-754
 * binary32.
 */
#ifndef EDBRIDGE_H
#define EDBRIDGE_H

#include <stddef.h>
#include <stdint.h>

#define EDB_SYNC0 0xEBu
#define EDB_SYNC1 0x90u
#define EDB_VERSION 1u
#define EDB_HEADER_BYTES 22u
#define EDB_CRC_BYTES 4u
#define EDB_OVERHEAD_BYTES (EDB_HEADER_BYTES + EDB_CRC_BYTES)
#define EDB_MAX_PAYLOAD 16384u
#define EDB_MAX_PACKET (EDB_OVERHEAD_BYTES + EDB_MAX_PAYLOAD)
#define EDB_MAX_SAMPLES 255u
#define EDB_INFO_PAYLOAD_BYTES 44u
#define EDB_HEARTBEAT_PAYLOAD_BYTES 10u
#define EDB_CONTROL_PAYLOAD_BYTES 6u
#define EDB_LAYOUT_BYTES 16u

/* packet types */
enum { EDB_RAW = 1, EDB_HIGH_GAMMA = 2, EDB_DEVICE_INFO = 3, EDB_HEARTBEAT = 4, EDB_CONTROL = 5 };
/* sample formats */
enum { EDB_FMT_NONE = 0, EDB_FMT_INT16 = 1, EDB_FMT_INT24 = 2, EDB_FMT_FLOAT32 = 3 };
/* CONTROL commands */
enum { EDB_CMD_START = 1, EDB_CMD_STOP = 2, EDB_CMD_REQUEST_INFO = 3, EDB_CMD_SET_STREAMS = 4 };

/* results (framers return a packet length > 0 or one of these negative codes) */
#define EDB_OK 0
#define EDB_E_ARG (-1)        /* bad type, format, count or scale */
#define EDB_E_SPACE (-2)      /* output buffer too small */
#define EDB_E_RANGE (-3)      /* a sample code outside its format's range */
#define EDB_E_NONFINITE (-4)  /* a NaN or infinite float */
#define EDB_E_HEADER_CRC (-5) /* header CRC-16 mismatch */
#define EDB_E_HEADER (-6)     /* header field impossible (version, type, format, length) */
#define EDB_E_CRC (-7)        /* packet CRC-32 mismatch */
#define EDB_E_PAYLOAD (-8)    /* CRC-valid payload that is invalid (NaN, bad device info, unknown command) */

typedef struct {
    uint8_t version;
    uint8_t type;
    uint16_t seq;
    uint32_t timestamp_us; /* device clock, µs, wraps at 2^32 */
    uint16_t n_channels;   /* data packets: >= 1; others 0 */
    uint8_t format;        /* data packets: EDB_FMT_*; others 0 */
    uint8_t n_samples;     /* data packets: samples per channel, 1..255; others 0 */
    uint16_t payload_len;  /* bytes */
    float scale;           /* physical units per count (µV/LSB for raw); others 0 */
} edb_header;

typedef struct {
    uint32_t device_id;
    uint16_t firmware_version;
    uint16_t n_channels;
    float raw_rate_hz;
    float frame_rate_hz;
    uint8_t raw_format;
    uint8_t hg_format;
    uint8_t raw_samples_per_packet;
    uint8_t hg_frames_per_packet;
    float raw_scale; /* µV per count */
    float hg_scale;  /* high-gamma units per count */
    char layout[EDB_LAYOUT_BYTES]; /* printable ASCII, NUL-padded (not necessarily NUL-terminated) */
} edb_device_info;

typedef struct {
    uint32_t packets_sent;
    uint32_t tx_overruns;
    uint16_t status;
} edb_heartbeat;

typedef struct {
    uint8_t command;
    uint32_t arg;
} edb_control;

/* ---- checksums ---- */
/* CRC-16/CCITT-FALSE: start with crc = 0xFFFF; check value of "123456789" is 0x29B1. */
uint16_t edb_crc16(uint16_t crc, const uint8_t *data, size_t n);
/* CRC-32/ISO-HDLC (zlib): edb_crc32(0, ...) for a fresh CRC, chain by passing the previous result; check
 * value of "123456789" is 0xCBF43926. */
uint32_t edb_crc32(uint32_t crc, const uint8_t *data, size_t n);

/* Bytes per sample of a format (0 if the format is not a sample format). */
size_t edb_sample_bytes(uint8_t format);
const char *edb_strerror(int code);

/* ---- framers: write one packet to out[0..cap), return its length or a negative EDB_E_* code ---- */
/* Data packets (type EDB_RAW or EDB_HIGH_GAMMA), sample-major: codes[s * n_channels + c]. */
int32_t edb_frame_ints(uint8_t *out, size_t cap, uint8_t type, uint16_t seq, uint32_t timestamp_us,
                       uint8_t format, float scale, uint16_t n_channels, uint8_t n_samples, const int32_t *codes);
int32_t edb_frame_floats(uint8_t *out, size_t cap, uint8_t type, uint16_t seq, uint32_t timestamp_us, float scale,
                         uint16_t n_channels, uint8_t n_samples, const float *values);
int32_t edb_frame_device_info(uint8_t *out, size_t cap, uint16_t seq, uint32_t timestamp_us,
                              const edb_device_info *info);
int32_t edb_frame_heartbeat(uint8_t *out, size_t cap, uint16_t seq, uint32_t timestamp_us, const edb_heartbeat *hb);
int32_t edb_frame_control(uint8_t *out, size_t cap, uint16_t seq, uint32_t timestamp_us, const edb_control *ctrl);

/* ---- decoding of one packet ---- */
/* Check and decode the first EDB_HEADER_BYTES of p (starting with the sync word). Returns EDB_OK,
 * EDB_E_HEADER_CRC or EDB_E_HEADER. */
int edb_decode_header(const uint8_t *p, uint16_t max_payload, edb_header *h);
/* Check a CRC-valid payload against its header: EDB_OK or EDB_E_PAYLOAD. */
int edb_check_payload(const edb_header *h, const uint8_t *payload);
/* Sample i (= s * n_channels + c) of a data payload. */
int32_t edb_sample_int(const uint8_t *payload, uint8_t format, size_t i);
float edb_sample_float(const uint8_t *payload, size_t i);
int edb_decode_device_info(const uint8_t *payload, edb_device_info *info);
void edb_decode_heartbeat(const uint8_t *payload, edb_heartbeat *hb);
int edb_decode_control(const uint8_t *payload, edb_control *ctrl);

/* ---- incremental parser ---- */
/* Counters are uint32 and wrap modulo 2^32 (bytes after 4 GiB, about 70 minutes at 1 MB/s). */
typedef struct {
    uint32_t bytes;               /* bytes fed */
    uint32_t packets_ok;          /* packets delivered */
    uint32_t header_crc_failures; /* sync word found, header CRC failed */
    uint32_t crc_failures;        /* header valid, packet CRC failed */
    uint32_t bad_headers;         /* header CRC valid, a field impossible */
    uint32_t rejected_payloads;   /* CRC-valid packet with an invalid payload */
    uint32_t resyncs;             /* runs of discarded bytes */
    uint32_t bytes_discarded;
} edb_counters;

/* Called for every accepted packet: its header, payload and the whole packet (header .. CRC). */
typedef void (*edb_packet_fn)(void *user, const edb_header *h, const uint8_t *payload, const uint8_t *packet,
                              size_t packet_len);

typedef struct {
    uint8_t *buf;  /* caller's storage */
    size_t cap;
    size_t start;  /* unparsed bytes are buf[start .. end) */
    size_t end;
    uint16_t max_payload;
    int have_header; /* the candidate at buf[start] has a checked header */
    int in_sync;
    edb_header header;
    edb_counters counters;
} edb_parser;

/* buf must hold at least EDB_OVERHEAD_BYTES + EDB_CONTROL_PAYLOAD_BYTES bytes; the largest payload accepted
 * is min(cap - EDB_OVERHEAD_BYTES, EDB_MAX_PAYLOAD). Returns EDB_OK or EDB_E_ARG. */
int edb_parser_init(edb_parser *p, uint8_t *buf, size_t cap);
/* Feed n received bytes; fn is called for each packet they complete, in stream order. */
void edb_parser_feed(edb_parser *p, const uint8_t *data, size_t n, edb_packet_fn fn, void *user);
/* Bytes held waiting for the rest of a packet. */
size_t edb_parser_buffered(const edb_parser *p);

#endif
