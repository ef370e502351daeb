/* The baseline of the export benchmark: a bare C flow loop, process start to file closed.
 *
 * Reads a classic pcap (Ethernet, optional 802.1Q tags, IPv4/IPv6, TCP/UDP/ICMP), keeps one
 * entry per bidirectional 5-tuple in an open-addressing hash table (packets, IP bytes and
 * first/last time per direction, OR of TCP flags), and writes one CSV line per flow.
 * No timeouts, no TCP state, no statistics: the least work a flow exporter can do.
 *
 *   cc -O2 -o bare_flow_loop bare_flow_loop.c && ./bare_flow_loop in.pcap out.csv
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    uint8_t a[16], b[16]; /* a: originator (first packet's source) */
    uint16_t pa, pb;
    uint8_t proto, ver, used, tcp_flags;
    uint64_t pkts[2], bytes[2];
    int64_t first_us, last_us;
} flow_t;

static flow_t *table;
static size_t cap, count;

static uint64_t hash_key(const uint8_t *x, const uint8_t *y, uint16_t px, uint16_t py,
                         uint8_t proto) {
    uint64_t h = 1469598103934665603ULL ^ proto;
    for (int i = 0; i < 16; i++) h = (h ^ (uint64_t)(x[i] ^ y[i])) * 1099511628211ULL;
    h ^= (uint64_t)(px ^ py) << 17 | (uint64_t)(px + py);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    return h ^ (h >> 32);
}

static void grow(void);

static flow_t *lookup(const uint8_t *src, const uint8_t *dst, uint16_t sp, uint16_t dp,
                      uint8_t proto, uint8_t ver, int *dir) {
    if (2 * (count + 1) > cap) grow();
    size_t i = hash_key(src, dst, sp, dp, proto) & (cap - 1);
    for (;; i = (i + 1) & (cap - 1)) {
        flow_t *f = &table[i];
        if (!f->used) {
            memcpy(f->a, src, 16);
            memcpy(f->b, dst, 16);
            f->pa = sp, f->pb = dp, f->proto = proto, f->ver = ver, f->used = 1;
            count++;
            *dir = 0;
            return f;
        }
        if (f->proto != proto) continue;
        if (f->pa == sp && f->pb == dp && !memcmp(f->a, src, 16) && !memcmp(f->b, dst, 16)) {
            *dir = 0;
            return f;
        }
        if (f->pa == dp && f->pb == sp && !memcmp(f->a, dst, 16) && !memcmp(f->b, src, 16)) {
            *dir = 1;
            return f;
        }
    }
}

static void grow(void) {
    flow_t *old = table;
    size_t old_cap = cap;
    cap = cap ? cap * 2 : 1 << 16;
    table = calloc(cap, sizeof(flow_t));
    if (!table) exit(2);
    count = 0;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].used) continue;
        size_t j = hash_key(old[i].a, old[i].b, old[i].pa, old[i].pb, old[i].proto) & (cap - 1);
        while (table[j].used) j = (j + 1) & (cap - 1);
        table[j] = old[i];
        count++;
    }
    free(old);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s IN.pcap OUT.csv\n", argv[0]);
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < 24) {
        perror(argv[1]);
        return 1;
    }
    const uint8_t *p = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return 1;
    madvise((void *)p, st.st_size, MADV_SEQUENTIAL);
    size_t off = 24, end = st.st_size;
    uint64_t packets = 0;
    while (off + 16 <= end) {
        uint32_t sec, usec, incl;
        memcpy(&sec, p + off, 4);
        memcpy(&usec, p + off + 4, 4);
        memcpy(&incl, p + off + 8, 4);
        off += 16;
        if (off + incl > end) break;
        const uint8_t *f = p + off;
        off += incl;
        packets++;
        size_t l2 = 14;
        if (incl < 14) continue;
        uint16_t et = f[12] << 8 | f[13];
        while ((et == 0x8100 || et == 0x88a8) && incl >= l2 + 4) {
            et = f[l2 + 2] << 8 | f[l2 + 3];
            l2 += 4;
        }
        uint8_t src[16] = {0}, dst[16] = {0}, proto, ver;
        size_t l4;
        uint32_t iplen;
        if (et == 0x0800 && incl >= l2 + 20) {
            const uint8_t *ip = f + l2;
            ver = 4, proto = ip[9];
            memcpy(src, ip + 12, 4);
            memcpy(dst, ip + 16, 4);
            iplen = ip[2] << 8 | ip[3];
            l4 = l2 + (ip[0] & 15) * 4;
        } else if (et == 0x86dd && incl >= l2 + 40) {
            const uint8_t *ip = f + l2;
            ver = 6, proto = ip[6];
            memcpy(src, ip + 8, 16);
            memcpy(dst, ip + 24, 16);
            iplen = 40 + (ip[4] << 8 | ip[5]);
            l4 = l2 + 40;
        } else {
            continue;
        }
        uint16_t sp = 0, dp = 0;
        uint8_t tcpf = 0;
        if ((proto == 6 || proto == 17) && incl >= l4 + 4) {
            sp = f[l4] << 8 | f[l4 + 1];
            dp = f[l4 + 2] << 8 | f[l4 + 3];
            if (proto == 6 && incl >= l4 + 14) tcpf = f[l4 + 13];
        } else if ((proto == 1 || proto == 58) && incl >= l4 + 2) {
            sp = f[l4], dp = f[l4 + 1];
        }
        int dir;
        flow_t *fl = lookup(src, dst, sp, dp, proto, ver, &dir);
        int64_t us = (int64_t)sec * 1000000 + usec;
        if (!fl->pkts[0] && !fl->pkts[1]) fl->first_us = us;
        fl->last_us = us;
        fl->pkts[dir]++;
        fl->bytes[dir] += iplen;
        fl->tcp_flags |= tcpf;
    }
    FILE *out = fopen(argv[2], "w");
    if (!out) {
        perror(argv[2]);
        return 1;
    }
    fputs("ts,orig_h,orig_p,resp_h,resp_p,proto,duration,orig_pkts,orig_ip_bytes,resp_pkts,"
          "resp_ip_bytes,tcp_flags\n",
          out);
    char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
    for (size_t i = 0; i < cap; i++) {
        flow_t *fl = &table[i];
        if (!fl->used) continue;
        int af = fl->ver == 6 ? AF_INET6 : AF_INET;
        inet_ntop(af, fl->a, a, sizeof a);
        inet_ntop(af, fl->b, b, sizeof b);
        fprintf(out, "%lld.%06lld,%s,%u,%s,%u,%u,%.6f,%llu,%llu,%llu,%llu,%u\n",
                (long long)(fl->first_us / 1000000), (long long)(fl->first_us % 1000000), a,
                fl->pa, b, fl->pb, fl->proto, (fl->last_us - fl->first_us) / 1e6,
                (unsigned long long)fl->pkts[0], (unsigned long long)fl->bytes[0],
                (unsigned long long)fl->pkts[1], (unsigned long long)fl->bytes[1],
                fl->tcp_flags);
    }
    if (fclose(out) != 0) return 1;
    printf("%llu %zu\n", (unsigned long long)packets, count);
    return 0;
}
