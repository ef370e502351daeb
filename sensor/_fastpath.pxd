# cython: language_level=3
# Table of contents of sensor/_fastpath.pyx, the compiled flow engine: every C struct
# it works on (with the constants that size them), file by file in include order. The
# functions and the protocol constants live in the .pxi files named in each heading; their
# Python twins in sensor/engine/reference/.
#
#   cdefs.pxi      C declarations (libc, byte swaps, records.h): included here
#   layout.pxi     record struct layout check against netwarden.records.schema
#   pcapread.pxi   pcap / pcapng reader over an mmap (zero copy; its state stays there)
#   api.pxi        FlowEngine, the Python boundary (declared at the end)

include "engine/cdefs.pxi"

# ---- decode.pxi: link, L2, IP and tunnel header decoders -------------------------
ctypedef Py_ssize_t ssz

cdef struct dc_pkt:
    uint32_t ethertype
    uint16_t vlan
    uint16_t inner_vlan
    uint8_t src_mac[6]
    uint8_t dst_mac[6]
    uint8_t ip_version
    ssz ip_off
    ssz ip_hdr_len
    ssz ip_len
    uint8_t proto
    ssz l4_off
    ssz l4_len
    uint8_t src[16]
    uint8_t dst[16]
    uint8_t addr_len  # 0 (unset), 4 or 16
    uint32_t frag_off
    uint8_t frag_more
    uint32_t frag_id
    uint8_t df
    uint8_t ttl
    uint8_t amsdu  # 802.11 QoS data with the A-MSDU bit: the payload is subframes

# ---- dns.pxi: DNS header + first question parser (bounded) -----------------------
cdef enum:  # sizes the structs below use
    DNS_MAX_TRACKED_NAMES = 64

cdef struct dns_msg:
    uint8_t is_response
    uint8_t rcode
    uint32_t qtype
    uint32_t ancount
    uint8_t qname[256]  # lower-cased, dot-separated
    int qname_len
    int longest_label
    double label_entropy

# ---- tcp.pxi: Zeek's TCP endpoint state machine and sequence accounting ----------
cdef enum:  # sizes the structs below use
    TCP_MAX_BLOCKS = 64

cdef struct tcp_ep:
    int state
    int prev_state
    int64_t start_seq
    int64_t last_seq
    int64_t ack_seq
    int64_t seq_wraps
    int64_t ack_wraps
    int64_t fin_cnt
    int64_t rst_cnt
    int64_t fin_seq
    bint did_close
    bint is_orig
    int64_t hist_last_syn
    int64_t hist_last_fin
    int64_t hist_last_rst
    int64_t rxmt_cnt
    int64_t rxmt_thresh
    int64_t win0_cnt
    int64_t win0_thresh
    int64_t gap_cnt
    int64_t gap_thresh
    int64_t chk_cnt
    int64_t chk_thresh
    int64_t window_scale
    int64_t reassem_seq
    int64_t trim_seq
    int64_t missed
    bint skip  # reassembly given up (Zeek's skip_deliveries): no more gaps
    bint did_eof  # all of this side's data delivered after its FIN/RST
    int nblocks
    int64_t (*blocks)[2]  # sorted [start, end) relative ranges, TCP_MAX_BLOCKS + 1 slots

# ---- flow.pxi: the flow struct, history letters, per-direction statistics --------
cdef enum:  # sizes the structs below use
    HIST_CAP = 40  # HISTORY_LEN: stored letters; longer histories only count

cdef struct fkey:
    uint8_t a_addr[16]
    uint8_t b_addr[16]
    uint16_t a_port
    uint16_t b_port
    uint8_t ip_version
    uint8_t proto
    uint8_t ttype
    uint8_t one_way
    uint16_t vlan
    uint16_t inner_vlan
    uint32_t pad

cdef struct side_t:
    uint64_t pkts
    uint64_t ip_bytes
    uint32_t len_min
    uint32_t len_max
    uint64_t len_sum
    uint64_t len_sq
    int64_t last_ts
    uint64_t iat_n
    double iat_min
    double iat_max
    double iat_sum
    double iat_sq
    uint32_t flags[8]
    uint8_t mac[6]

cdef struct flow_t:
    # table bookkeeping
    fkey key
    uint64_t hash
    bint in_use
    uint32_t next_free
    uint32_t lru_prev  # pool index + 1; 0 = none
    uint32_t lru_next
    # identity
    uint64_t flow_id
    uint64_t parent_id
    uint8_t ip_version
    uint8_t proto
    uint8_t ttype
    uint8_t iface
    uint8_t orig_addr[16]
    uint8_t resp_addr[16]
    uint16_t orig_port
    uint16_t resp_port
    uint16_t vlan
    uint16_t inner_vlan
    bint one_way
    uint32_t tun_violated  # bit per tunnel type whose header failed on this flow
    int64_t start_ns
    int64_t last_ns
    # history
    char hist[HIST_CAP]
    uint32_t hist_len
    uint8_t hist_rx
    uint32_t hist_seen
    # directions
    int oi  # slot of the originator in sd[] / ep[]
    side_t sd[2]
    tcp_ep* ep  # two TCP endpoints (TCP flows only; NULL otherwise: UDP/ICMP flows stay small)
    # UDP/ICMP payload bytes per role slot, -1 = never sent (Zeek's INACTIVE). Like Zeek's
    # request_len / reply_len these do NOT follow a role flip.
    int64_t req_len
    int64_t rep_len
    bint dns_first_done  # Zeek's DNS analyzer has seen its first message
    bint ntp_flipped
    bint close_deferred  # a FIN/RST close waits for pending data (Zeek)
    uint64_t parent_cur  # encapsulation of the latest packet (tunnel id / outer flow)
    uint32_t tun_changes
    bint is_partial
    uint8_t first_packet_seen
    uint8_t flags
    uint8_t n_first
    uint16_t first_sizes[16]
    uint16_t first_dirs
    # DNS summary
    uint32_t dns_queries
    uint32_t dns_responses
    uint32_t dns_answers
    uint32_t dns_nnames
    uint64_t* dns_names  # hashes of distinct query names, DNS_MAX_TRACKED_NAMES slots
    uint32_t dns_nxdomain
    uint32_t dns_qtype_mask
    double dns_entropy
    uint32_t dns_rcode_mask
    uint32_t dns_longest
    uint32_t dns_max_name
    uint8_t dns_qname[64]
    uint8_t dns_qname_len

# ---- flowtable.pxi: open-addressing flow table over a pool of flow structs -------
cdef struct ftable:
    uint32_t* slots  # 0 empty, else pool index + 1
    uint64_t nslots  # power of two, >= 2 * pool capacity
    flow_t* pool
    uint32_t cap  # allocated pool entries
    uint32_t max_flows
    uint32_t used
    uint32_t free_head  # pool index + 1 of the first free entry, 0 = none
    uint32_t high  # entries ever handed out (pool[high:] never used)

# ---- timers.pxi: network-time timer heap -----------------------------------------
cdef struct timer_t:
    int64_t due
    uint64_t seq
    uint64_t flow_id
    uint32_t idx
    uint32_t kind

cdef struct theap:
    timer_t* h
    size_t n
    size_t cap
    uint64_t seq

# ---- frag.pxi: bounded IP fragment reassembly ------------------------------------
cdef struct frag_t:
    uint8_t ver
    uint8_t proto
    uint8_t src[16]
    uint8_t dst[16]
    uint32_t frag_id
    int64_t first_ns
    ssz total  # payload length once the last fragment is seen, else -1
    uint8_t* data
    ssz data_len
    uint8_t* hdr  # IP header (+ extension headers) of the offset-0 fragment
    ssz hdr_len
    int64_t (*ranges)[2]
    ssz nranges
    ssz ranges_cap
    uint32_t prev  # FIFO links: pool index + 1, 0 = none
    uint32_t next

cdef struct fragstore:
    frag_t* pool
    uint32_t cap
    uint32_t count
    uint32_t head  # oldest
    uint32_t tail
    uint32_t free_head

# ---- engine.pxi: engine state, packet path, flow table use, timers, fragments ----
cdef enum:  # sizes the structs below use
    MAX_TUNNEL_DEPTH = 4

cdef struct tun_ent:
    uint8_t used
    uint8_t ver
    uint8_t proto  # outer IP protocol: GRE and IP-in-IP on one pair are distinct tunnels
    uint8_t lo[16]  # the address pair, ordered: either direction is the same tunnel
    uint8_t hi[16]
    uint64_t id

cdef struct pkt_ctx:
    # Where a packet is being decoded: what each step of the packet path hands the next,
    # beside the bytes themselves (which change with reassembly and 802.11 subframes).
    int64_t ts  # capture time, ns
    uint8_t iface
    uint8_t ttype  # type of the enclosing tunnel (TT_*), TT_NONE for the outer packet
    uint64_t parent  # flow_id of the enclosing tunnel flow, 0 for the outer packet
    int depth  # tunnel nesting, 0 for the outer packet
    bint fragmented  # the bytes are a reassembled IP datagram


cdef struct eng_stats:
    uint64_t packets
    uint64_t bytes
    uint64_t decode_errors
    uint64_t unsupported_link
    uint64_t flows_created
    uint64_t flows_emitted
    uint64_t flows_evicted
    uint64_t arp
    uint64_t frag_reassembled
    uint64_t frag_dropped
    uint64_t checksum_errors
    uint64_t tunnel_packets
    uint64_t non_ip
    uint64_t no_transport

cdef struct eng_t:
    # configuration (network-time nanoseconds)
    int64_t tcp_to
    int64_t udp_to
    int64_t icmp_to
    int64_t other_to
    int64_t active_to
    int64_t frag_to
    bint validate
    bint tunnels
    bint dns
    # state
    ftable ft
    uint32_t lru_head  # pool index + 1 of the least recently active flow
    uint32_t lru_tail
    theap timers
    fragstore frags
    int64_t now
    uint64_t next_id
    uint64_t sensor  # record identity (EngineConfig.sensor / .session), stamped on records
    uint64_t session
    tun_ent* tun
    uint32_t tun_count
    uint8_t* scratch[MAX_TUNNEL_DEPTH + 1]
    # outputs
    nw_flow_rec* outf
    size_t outf_start
    size_t outf_n
    size_t outf_cap
    nw_arp_rec* outa
    size_t outa_start
    size_t outa_n
    size_t outa_cap
    nw_pktsum_rec* ps  # row of the packet being decoded, NULL when not summarised
    dns_msg dnsm
    bint oom  # an allocation failed; reported at the Python boundary
    eng_stats st

# ---- api.pxi: the Python boundary ------------------------------------------------------

cdef class FlowEngine:
    cdef eng_t* e
    cdef readonly object config
    cdef bint busy  # a call is running without the GIL: a second caller must not enter
    cdef _enter(self)  # claim the engine for one call (raises if another thread holds it)
    cdef _check_oom(self)  # raise MemoryError if an output queue could not grow
