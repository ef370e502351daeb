# C declarations shared by every part of the engine.

from libc.stdint cimport (
    INT64_MAX, INT64_MIN, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t,
)
from libc.math cimport sqrt
from libc.stdlib cimport calloc, free, malloc, qsort, realloc
from libc.stdio cimport snprintf
from libc.string cimport memcmp, memcpy, memmove, memset, strncpy


cdef extern from *:
    """
    #define nw_bswap16(x) __builtin_bswap16(x)
    #define nw_bswap32(x) __builtin_bswap32(x)
    #define nw_bswap64(x) __builtin_bswap64(x)
    #define nw_prefetch(p) __builtin_prefetch(p)
    """
    uint16_t bswap16 "nw_bswap16"(uint16_t) nogil
    uint32_t bswap32 "nw_bswap32"(uint32_t) nogil
    uint64_t bswap64 "nw_bswap64"(uint64_t) nogil
    void prefetch "nw_prefetch"(const void *) nogil
    # GCC/Clang's 128-bit integer, for timestamp arithmetic that must not overflow; Cython
    # only needs a name for it (declared as a wide signed integer).
    ctypedef long long __int128 "__int128"


cdef extern from "records.h":
    ctypedef struct nw_flow_rec:
        uint64_t flow_id
        uint64_t parent_id
        uint64_t sensor
        uint64_t session
        int64_t ts_first_ns
        int64_t ts_last_ns
        uint64_t orig_bytes
        uint64_t resp_bytes
        uint64_t missed_bytes
        uint64_t orig_pkts
        uint64_t resp_pkts
        uint64_t orig_ip_bytes
        uint64_t resp_ip_bytes
        double orig_len_mean
        double orig_len_std
        double resp_len_mean
        double resp_len_std
        double orig_iat_min
        double orig_iat_max
        double orig_iat_mean
        double orig_iat_std
        double resp_iat_min
        double resp_iat_max
        double resp_iat_mean
        double resp_iat_std
        uint32_t orig_len_min
        uint32_t orig_len_max
        uint32_t resp_len_min
        uint32_t resp_len_max
        uint32_t orig_flag_counts[8]
        uint32_t resp_flag_counts[8]
        uint32_t dns_queries
        uint32_t dns_responses
        uint32_t dns_answers
        uint32_t dns_distinct_names
        uint32_t dns_nxdomain
        uint32_t dns_qtype_mask
        float dns_label_entropy_max
        uint16_t dns_rcode_mask
        uint16_t dns_longest_label
        uint16_t dns_max_name_len
        uint16_t orig_port
        uint16_t resp_port
        uint16_t vlan
        uint16_t inner_vlan
        uint16_t first_sizes[16]
        uint16_t first_dirs
        uint8_t n_first
        uint8_t ip_version
        uint8_t proto
        uint8_t conn_state
        uint8_t tunnel_type
        uint8_t end_reason
        uint8_t flags
        uint8_t iface
        uint8_t orig_addr[16]
        uint8_t resp_addr[16]
        uint8_t orig_mac[6]
        uint8_t resp_mac[6]
        char history[40]
        char dns_qname[64]

    ctypedef struct nw_arp_rec:
        int64_t ts_ns
        uint64_t sensor
        uint64_t session
        uint16_t op
        uint16_t vlan
        uint8_t sender_mac[6]
        uint8_t target_mac[6]
        uint8_t eth_src[6]
        uint8_t sender_ip[4]
        uint8_t target_ip[4]
        uint8_t iface

    ctypedef struct nw_pktsum_rec:
        int64_t ts_ns
        uint64_t flow_id
        uint32_t ip_len
        uint32_t payload_len
        uint16_t sport
        uint16_t dport
        uint8_t ip_version
        uint8_t proto
        uint8_t tcp_flags
        uint8_t events
        uint8_t src[16]
        uint8_t dst[16]
