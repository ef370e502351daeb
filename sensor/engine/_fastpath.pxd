# cython: language_level=3
# Table of contents of sensor/engine/_fastpath.pyx, the compiled flow engine: every constant
# and C struct it works on, file by file in include order (the functions live in the .pxi
# files named in each heading; their Python twins in sensor/engine/reference/).
#
#   cdefs.pxi      C declarations (libc, byte swaps, records.h): included here
#   layout.pxi     record struct layout check against netwarden.records.schema
#   pcapread.pxi   pcap / pcapng reader over an mmap (zero copy; its state stays there)
#   api.pxi        FlowEngine, the Python boundary (declared at the end)

include "cdefs.pxi"

# ---- decode.pxi: link, L2, IP and tunnel header decoders -------------------------
ctypedef Py_ssize_t ssz

cdef enum:
    ETH_IPV4 = 0x0800
    ETH_IPV6 = 0x86DD
    ETH_ARP = 0x0806
    ETH_VLAN = 0x8100
    ETH_QINQ = 0x88A8
    ETH_QINQ_OLD = 0x9100
    ETH_MPLS_UC = 0x8847
    ETH_MPLS_MC = 0x8848
    ETH_PPPOE_SESS = 0x8864
    ETH_PBB = 0x88E7
    ETH_FABRICPATH = 0x8903
    ETH_VNTAG = 0x8926
    ETH_TEB = 0x6558
    ETH_ERSPAN2 = 0x88BE
    ETH_ERSPAN3 = 0x22EB
    ETH_PPP = 0x880B
    ETH_NONE = 0
    ETH_80211 = 0x10000  # pseudo ethertype: an 802.11 frame follows (radiotap, Aruba GRE)
    NOT_IP = -2  # decoder result: a well-formed frame that carries no IP/ARP
    MAX_L2_DEPTH = 8
    MAX_IPV6_EXT = 16

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
cdef enum:
    DNS_MAX_POINTERS = 16
    DNS_MAX_NAME = 255
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
cdef enum:
    EP_INACTIVE = 0
    EP_SYN_SENT = 1
    EP_SYN_ACK_SENT = 2
    EP_PARTIAL = 3
    EP_ESTABLISHED = 4
    EP_CLOSED = 5
    EP_RESET = 6

    TH_FIN = 0x01
    TH_SYN = 0x02
    TH_RST = 0x04
    TH_PUSH = 0x08
    TH_ACK = 0x10
    TH_URG = 0x20

    HIST_SYN = 0x1
    HIST_FIN = 0x2
    HIST_RST = 0x4
    HIST_FIN_RST = 0x8
    HIST_DATA = 0x10
    HIST_ACK = 0x20
    HIST_MULTI = 0x40

    TOO_LARGE_SEQ_DELTA = 1048576
    TCP_MAX_BLOCKS = 64
    # Zeek's tcp_max_above_hole_without_any_acks / tcp_excessive_data_without_further_acks
    MAX_ABOVE_HOLE_WITHOUT_ACKS = 16384
    MAX_BUFFERED_WITHOUT_ACKS = 10 * 1024 * 1024

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
cdef enum:
    HIST_CAP = 40  # HISTORY_LEN: stored letters; longer histories only count
    FLAG_INTERIM = 1
    FLAG_FLIPPED = 2
    FLAG_BAD_CHECKSUM = 4
    FLAG_FRAGMENTED = 8
    # Zeek's /^?S[^HAFGIQ]*R/ over the history, run as letters are appended.
    RX_START = 0
    RX_CARET = 1
    RX_IN = 2
    RX_MATCH = 3
    RX_FAIL = 4

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
cdef enum:
    FT_MIN_POOL = 1024

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
cdef enum:
    TM_INACTIVITY = 0
    TM_ATTEMPT = 1
    TM_EXPIRE = 2
    TM_DELETE = 3
    TM_RESET = 4
    TM_ACTIVE = 5
    TM_DNS = 6  # Zeek's DNS analyzer session timer on UDP DNS ports

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
cdef enum:
    MAX_FRAG_BYTES = 65535 + 40

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
cdef enum:
    PROTO_ICMP = 1
    PROTO_TCP = 6
    PROTO_UDP = 17
    PROTO_ICMP6 = 58
    PROTO_ESP = 50
    PROTO_NONE = 59  # IPv6 no next header
    PROTO_MOBILITY = 135
    UDP_VXLAN = 4789
    UDP_GENEVE = 6081
    UDP_GTPU = 2152
    UDP_GTPC = 2123
    UDP_NTP = 123
    UDP_GRE = 4754  # GRE-in-UDP (RFC 8086)
    UDP_TEREDO = 3544
    UDP_AYIYA = 5072
    MAX_TUNNEL_DEPTH = 4
    MAX_TUNNEL_IDS = 65536
    MAX_TUNNEL_CHANGES = 5  # Zeek's Tunnel::max_changes_per_connection
    TUN_SLOTS = 131072

    TT_NONE = 0
    TT_IP = 1
    TT_GRE = 2
    TT_VXLAN = 3
    TT_GENEVE = 4
    TT_GTPV1 = 5
    TT_TEREDO = 6
    TT_AYIYA = 7

    ER_ACTIVE = 0
    ER_IDLE = 1
    ER_CLOSED = 2
    ER_EOF = 3
    ER_EVICTED = 4

    CS_S0 = 1
    CS_S1 = 2
    CS_SF = 3
    CS_REJ = 4
    CS_S2 = 5
    CS_S3 = 6
    CS_RSTO = 7
    CS_RSTR = 8
    CS_RSTOS0 = 9
    CS_RSTRH = 10
    CS_SH = 11
    CS_SHR = 12
    CS_OTH = 13

    EV_NEW_FLOW = 1
    EV_REPLY = 2
    EV_FIRST_REPLY = 4
    EV_ICMP_UNREACH = 8
    EV_DNS_QUERY = 16
    EV_DNS_RESPONSE = 32
    EV_ARP = 64
    EV_FLOW_END = 128

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
