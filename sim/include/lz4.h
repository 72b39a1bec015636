/* Minimal LZ4 block encoder for Verilator's FST writer (WAVES=1), so waves need no liblz4-dev.
 *
 * It emits valid LZ4 blocks made of one literal-only sequence (the format's "last sequence"): any LZ4
 * decoder, hence any FST viewer, reads them. There is no compression; FST's own value compression
 * (zlib) still applies. Only the two functions Verilator's fstcpp writer calls are provided. */
#ifndef TENSORNIC_LZ4_SHIM_H
#define TENSORNIC_LZ4_SHIM_H

static inline int LZ4_compressBound(int size) {
    return (size < 0) ? 0 : size + size / 255 + 16;
}

static inline int LZ4_compress_default(const char *src, char *dst, int src_size, int dst_capacity) {
    if (src_size < 0 || dst_capacity < LZ4_compressBound(src_size)) return 0;
    int out = 0;
    int remaining = src_size;
    dst[out++] = (char)((remaining >= 15 ? 15 : remaining) << 4);   /* token: literal length, no match */
    if (remaining >= 15) {
        remaining -= 15;
        while (remaining >= 255) { dst[out++] = (char)255; remaining -= 255; }
        dst[out++] = (char)remaining;
    }
    for (int i = 0; i < src_size; i++) dst[out++] = src[i];
    return out;
}

#endif
