/* C mirrors of the numpy record dtypes in netwarden/records/schema.py (SCHEMA_VERSION 2).
 *
 * Field order, types and natural alignment match the dtypes built with align=True, so a
 * record written here can be memcpy'd into a numpy structured array. _fastpath.pyx checks
 * every offset with netwarden.records.schema.check_layout when it loads: edit both files together.
 */
#ifndef NETWARDEN_RECORDS_H
#define NETWARDEN_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#define NW_HISTORY_LEN 40
#define NW_QNAME_LEN 64
#define NW_FIRST_PKTS 16

typedef struct nw_flow_rec {
    uint64_t flow_id;
    uint64_t parent_id;
    uint64_t sensor;
    uint64_t session;
    int64_t ts_first_ns;
    int64_t ts_last_ns;
    uint64_t orig_bytes;
    uint64_t resp_bytes;
    uint64_t missed_bytes;
    uint64_t orig_pkts;
    uint64_t resp_pkts;
    uint64_t orig_ip_bytes;
    uint64_t resp_ip_bytes;
    double orig_len_mean;
    double orig_len_std;
    double resp_len_mean;
    double resp_len_std;
    double orig_iat_min;
    double orig_iat_max;
    double orig_iat_mean;
    double orig_iat_std;
    double resp_iat_min;
    double resp_iat_max;
    double resp_iat_mean;
    double resp_iat_std;
    uint32_t orig_len_min;
    uint32_t orig_len_max;
    uint32_t resp_len_min;
    uint32_t resp_len_max;
    uint32_t orig_flag_counts[8];
    uint32_t resp_flag_counts[8];
    uint32_t dns_queries;
    uint32_t dns_responses;
    uint32_t dns_answers;
    uint32_t dns_distinct_names;
    uint32_t dns_nxdomain;
    uint32_t dns_qtype_mask;
    float dns_label_entropy_max;
    uint16_t dns_rcode_mask;
    uint16_t dns_longest_label;
    uint16_t dns_max_name_len;
    uint16_t orig_port;
    uint16_t resp_port;
    uint16_t vlan;
    uint16_t inner_vlan;
    uint16_t first_sizes[NW_FIRST_PKTS];
    uint16_t first_dirs;
    uint8_t n_first;
    uint8_t ip_version;
    uint8_t proto;
    uint8_t conn_state;
    uint8_t tunnel_type;
    uint8_t end_reason;
    uint8_t flags;
    uint8_t iface;
    uint8_t orig_addr[16];
    uint8_t resp_addr[16];
    uint8_t orig_mac[6];
    uint8_t resp_mac[6];
    char history[NW_HISTORY_LEN];
    char dns_qname[NW_QNAME_LEN];
} nw_flow_rec;

typedef struct nw_arp_rec {
    int64_t ts_ns;
    uint64_t sensor;
    uint64_t session;
    uint16_t op;
    uint16_t vlan;
    uint8_t sender_mac[6];
    uint8_t target_mac[6];
    uint8_t eth_src[6];
    uint8_t sender_ip[4];
    uint8_t target_ip[4];
    uint8_t iface;
} nw_arp_rec;

typedef struct nw_pktsum_rec {
    int64_t ts_ns;
    uint64_t flow_id;
    uint32_t ip_len;
    uint32_t payload_len;
    uint16_t sport;
    uint16_t dport;
    uint8_t ip_version;
    uint8_t proto;
    uint8_t tcp_flags;
    uint8_t events;
    uint8_t src[16];
    uint8_t dst[16];
} nw_pktsum_rec;

/* Field tables for the layout check: name, offsetof and size of every member, in order. */
typedef struct nw_field {
    const char *name;
    size_t offset;
    size_t size;
} nw_field;

#define NW_FIELD(T, f) { #f, offsetof(T, f), sizeof(((T *)0)->f) }

static const nw_field nw_flow_fields[] = {
    NW_FIELD(nw_flow_rec, flow_id),
    NW_FIELD(nw_flow_rec, parent_id),
    NW_FIELD(nw_flow_rec, sensor),
    NW_FIELD(nw_flow_rec, session),
    NW_FIELD(nw_flow_rec, ts_first_ns),
    NW_FIELD(nw_flow_rec, ts_last_ns),
    NW_FIELD(nw_flow_rec, orig_bytes),
    NW_FIELD(nw_flow_rec, resp_bytes),
    NW_FIELD(nw_flow_rec, missed_bytes),
    NW_FIELD(nw_flow_rec, orig_pkts),
    NW_FIELD(nw_flow_rec, resp_pkts),
    NW_FIELD(nw_flow_rec, orig_ip_bytes),
    NW_FIELD(nw_flow_rec, resp_ip_bytes),
    NW_FIELD(nw_flow_rec, orig_len_mean),
    NW_FIELD(nw_flow_rec, orig_len_std),
    NW_FIELD(nw_flow_rec, resp_len_mean),
    NW_FIELD(nw_flow_rec, resp_len_std),
    NW_FIELD(nw_flow_rec, orig_iat_min),
    NW_FIELD(nw_flow_rec, orig_iat_max),
    NW_FIELD(nw_flow_rec, orig_iat_mean),
    NW_FIELD(nw_flow_rec, orig_iat_std),
    NW_FIELD(nw_flow_rec, resp_iat_min),
    NW_FIELD(nw_flow_rec, resp_iat_max),
    NW_FIELD(nw_flow_rec, resp_iat_mean),
    NW_FIELD(nw_flow_rec, resp_iat_std),
    NW_FIELD(nw_flow_rec, orig_len_min),
    NW_FIELD(nw_flow_rec, orig_len_max),
    NW_FIELD(nw_flow_rec, resp_len_min),
    NW_FIELD(nw_flow_rec, resp_len_max),
    NW_FIELD(nw_flow_rec, orig_flag_counts),
    NW_FIELD(nw_flow_rec, resp_flag_counts),
    NW_FIELD(nw_flow_rec, dns_queries),
    NW_FIELD(nw_flow_rec, dns_responses),
    NW_FIELD(nw_flow_rec, dns_answers),
    NW_FIELD(nw_flow_rec, dns_distinct_names),
    NW_FIELD(nw_flow_rec, dns_nxdomain),
    NW_FIELD(nw_flow_rec, dns_qtype_mask),
    NW_FIELD(nw_flow_rec, dns_label_entropy_max),
    NW_FIELD(nw_flow_rec, dns_rcode_mask),
    NW_FIELD(nw_flow_rec, dns_longest_label),
    NW_FIELD(nw_flow_rec, dns_max_name_len),
    NW_FIELD(nw_flow_rec, orig_port),
    NW_FIELD(nw_flow_rec, resp_port),
    NW_FIELD(nw_flow_rec, vlan),
    NW_FIELD(nw_flow_rec, inner_vlan),
    NW_FIELD(nw_flow_rec, first_sizes),
    NW_FIELD(nw_flow_rec, first_dirs),
    NW_FIELD(nw_flow_rec, n_first),
    NW_FIELD(nw_flow_rec, ip_version),
    NW_FIELD(nw_flow_rec, proto),
    NW_FIELD(nw_flow_rec, conn_state),
    NW_FIELD(nw_flow_rec, tunnel_type),
    NW_FIELD(nw_flow_rec, end_reason),
    NW_FIELD(nw_flow_rec, flags),
    NW_FIELD(nw_flow_rec, iface),
    NW_FIELD(nw_flow_rec, orig_addr),
    NW_FIELD(nw_flow_rec, resp_addr),
    NW_FIELD(nw_flow_rec, orig_mac),
    NW_FIELD(nw_flow_rec, resp_mac),
    NW_FIELD(nw_flow_rec, history),
    NW_FIELD(nw_flow_rec, dns_qname),
};
#define NW_FLOW_NFIELDS (sizeof(nw_flow_fields) / sizeof(nw_field))

static const nw_field nw_arp_fields[] = {
    NW_FIELD(nw_arp_rec, ts_ns),
    NW_FIELD(nw_arp_rec, sensor),
    NW_FIELD(nw_arp_rec, session),
    NW_FIELD(nw_arp_rec, op),
    NW_FIELD(nw_arp_rec, vlan),
    NW_FIELD(nw_arp_rec, sender_mac),
    NW_FIELD(nw_arp_rec, target_mac),
    NW_FIELD(nw_arp_rec, eth_src),
    NW_FIELD(nw_arp_rec, sender_ip),
    NW_FIELD(nw_arp_rec, target_ip),
    NW_FIELD(nw_arp_rec, iface),
};
#define NW_ARP_NFIELDS (sizeof(nw_arp_fields) / sizeof(nw_field))

static const nw_field nw_pktsum_fields[] = {
    NW_FIELD(nw_pktsum_rec, ts_ns),
    NW_FIELD(nw_pktsum_rec, flow_id),
    NW_FIELD(nw_pktsum_rec, ip_len),
    NW_FIELD(nw_pktsum_rec, payload_len),
    NW_FIELD(nw_pktsum_rec, sport),
    NW_FIELD(nw_pktsum_rec, dport),
    NW_FIELD(nw_pktsum_rec, ip_version),
    NW_FIELD(nw_pktsum_rec, proto),
    NW_FIELD(nw_pktsum_rec, tcp_flags),
    NW_FIELD(nw_pktsum_rec, events),
    NW_FIELD(nw_pktsum_rec, src),
    NW_FIELD(nw_pktsum_rec, dst),
};
#define NW_PKTSUM_NFIELDS (sizeof(nw_pktsum_fields) / sizeof(nw_field))

#endif
