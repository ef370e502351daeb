# Record layout check: the C structs of records.h against the numpy dtypes of schema.py.
#
# Runs once at import. Offsets are taken from a real struct instance (address differences),
# so they are what the C compiler laid out, not what we hoped it would.

cdef inline tuple _f(Py_ssize_t off, size_t size):
    return (off, size)


cdef dict _flow_layout():
    cdef nw_flow_rec r
    cdef char* b = <char*>&r
    return {
        "flow_id": _f(<char*>&r.flow_id - b, sizeof(r.flow_id)),
        "parent_id": _f(<char*>&r.parent_id - b, sizeof(r.parent_id)),
        "ts_first_ns": _f(<char*>&r.ts_first_ns - b, sizeof(r.ts_first_ns)),
        "ts_last_ns": _f(<char*>&r.ts_last_ns - b, sizeof(r.ts_last_ns)),
        "orig_bytes": _f(<char*>&r.orig_bytes - b, sizeof(r.orig_bytes)),
        "resp_bytes": _f(<char*>&r.resp_bytes - b, sizeof(r.resp_bytes)),
        "missed_bytes": _f(<char*>&r.missed_bytes - b, sizeof(r.missed_bytes)),
        "orig_pkts": _f(<char*>&r.orig_pkts - b, sizeof(r.orig_pkts)),
        "resp_pkts": _f(<char*>&r.resp_pkts - b, sizeof(r.resp_pkts)),
        "orig_ip_bytes": _f(<char*>&r.orig_ip_bytes - b, sizeof(r.orig_ip_bytes)),
        "resp_ip_bytes": _f(<char*>&r.resp_ip_bytes - b, sizeof(r.resp_ip_bytes)),
        "orig_len_mean": _f(<char*>&r.orig_len_mean - b, sizeof(r.orig_len_mean)),
        "orig_len_std": _f(<char*>&r.orig_len_std - b, sizeof(r.orig_len_std)),
        "resp_len_mean": _f(<char*>&r.resp_len_mean - b, sizeof(r.resp_len_mean)),
        "resp_len_std": _f(<char*>&r.resp_len_std - b, sizeof(r.resp_len_std)),
        "orig_iat_min": _f(<char*>&r.orig_iat_min - b, sizeof(r.orig_iat_min)),
        "orig_iat_max": _f(<char*>&r.orig_iat_max - b, sizeof(r.orig_iat_max)),
        "orig_iat_mean": _f(<char*>&r.orig_iat_mean - b, sizeof(r.orig_iat_mean)),
        "orig_iat_std": _f(<char*>&r.orig_iat_std - b, sizeof(r.orig_iat_std)),
        "resp_iat_min": _f(<char*>&r.resp_iat_min - b, sizeof(r.resp_iat_min)),
        "resp_iat_max": _f(<char*>&r.resp_iat_max - b, sizeof(r.resp_iat_max)),
        "resp_iat_mean": _f(<char*>&r.resp_iat_mean - b, sizeof(r.resp_iat_mean)),
        "resp_iat_std": _f(<char*>&r.resp_iat_std - b, sizeof(r.resp_iat_std)),
        "orig_len_min": _f(<char*>&r.orig_len_min - b, sizeof(r.orig_len_min)),
        "orig_len_max": _f(<char*>&r.orig_len_max - b, sizeof(r.orig_len_max)),
        "resp_len_min": _f(<char*>&r.resp_len_min - b, sizeof(r.resp_len_min)),
        "resp_len_max": _f(<char*>&r.resp_len_max - b, sizeof(r.resp_len_max)),
        "orig_flag_counts": _f(<char*>&r.orig_flag_counts[0] - b, sizeof(r.orig_flag_counts)),
        "resp_flag_counts": _f(<char*>&r.resp_flag_counts[0] - b, sizeof(r.resp_flag_counts)),
        "dns_queries": _f(<char*>&r.dns_queries - b, sizeof(r.dns_queries)),
        "dns_responses": _f(<char*>&r.dns_responses - b, sizeof(r.dns_responses)),
        "dns_answers": _f(<char*>&r.dns_answers - b, sizeof(r.dns_answers)),
        "dns_distinct_names": _f(<char*>&r.dns_distinct_names - b, sizeof(r.dns_distinct_names)),
        "dns_nxdomain": _f(<char*>&r.dns_nxdomain - b, sizeof(r.dns_nxdomain)),
        "dns_qtype_mask": _f(<char*>&r.dns_qtype_mask - b, sizeof(r.dns_qtype_mask)),
        "dns_label_entropy_max": _f(<char*>&r.dns_label_entropy_max - b,
                                    sizeof(r.dns_label_entropy_max)),
        "dns_rcode_mask": _f(<char*>&r.dns_rcode_mask - b, sizeof(r.dns_rcode_mask)),
        "dns_longest_label": _f(<char*>&r.dns_longest_label - b, sizeof(r.dns_longest_label)),
        "dns_max_name_len": _f(<char*>&r.dns_max_name_len - b, sizeof(r.dns_max_name_len)),
        "orig_port": _f(<char*>&r.orig_port - b, sizeof(r.orig_port)),
        "resp_port": _f(<char*>&r.resp_port - b, sizeof(r.resp_port)),
        "vlan": _f(<char*>&r.vlan - b, sizeof(r.vlan)),
        "inner_vlan": _f(<char*>&r.inner_vlan - b, sizeof(r.inner_vlan)),
        "first_sizes": _f(<char*>&r.first_sizes[0] - b, sizeof(r.first_sizes)),
        "first_dirs": _f(<char*>&r.first_dirs - b, sizeof(r.first_dirs)),
        "n_first": _f(<char*>&r.n_first - b, sizeof(r.n_first)),
        "ip_version": _f(<char*>&r.ip_version - b, sizeof(r.ip_version)),
        "proto": _f(<char*>&r.proto - b, sizeof(r.proto)),
        "conn_state": _f(<char*>&r.conn_state - b, sizeof(r.conn_state)),
        "tunnel_type": _f(<char*>&r.tunnel_type - b, sizeof(r.tunnel_type)),
        "end_reason": _f(<char*>&r.end_reason - b, sizeof(r.end_reason)),
        "flags": _f(<char*>&r.flags - b, sizeof(r.flags)),
        "iface": _f(<char*>&r.iface - b, sizeof(r.iface)),
        "orig_addr": _f(<char*>&r.orig_addr[0] - b, sizeof(r.orig_addr)),
        "resp_addr": _f(<char*>&r.resp_addr[0] - b, sizeof(r.resp_addr)),
        "orig_mac": _f(<char*>&r.orig_mac[0] - b, sizeof(r.orig_mac)),
        "resp_mac": _f(<char*>&r.resp_mac[0] - b, sizeof(r.resp_mac)),
        "history": _f(<char*>&r.history[0] - b, sizeof(r.history)),
        "dns_qname": _f(<char*>&r.dns_qname[0] - b, sizeof(r.dns_qname)),
    }


cdef dict _arp_layout():
    cdef nw_arp_rec r
    cdef char* b = <char*>&r
    return {
        "ts_ns": _f(<char*>&r.ts_ns - b, sizeof(r.ts_ns)),
        "op": _f(<char*>&r.op - b, sizeof(r.op)),
        "vlan": _f(<char*>&r.vlan - b, sizeof(r.vlan)),
        "sender_mac": _f(<char*>&r.sender_mac[0] - b, sizeof(r.sender_mac)),
        "target_mac": _f(<char*>&r.target_mac[0] - b, sizeof(r.target_mac)),
        "eth_src": _f(<char*>&r.eth_src[0] - b, sizeof(r.eth_src)),
        "sender_ip": _f(<char*>&r.sender_ip[0] - b, sizeof(r.sender_ip)),
        "target_ip": _f(<char*>&r.target_ip[0] - b, sizeof(r.target_ip)),
        "iface": _f(<char*>&r.iface - b, sizeof(r.iface)),
    }


cdef dict _pktsum_layout():
    cdef nw_pktsum_rec r
    cdef char* b = <char*>&r
    return {
        "ts_ns": _f(<char*>&r.ts_ns - b, sizeof(r.ts_ns)),
        "flow_id": _f(<char*>&r.flow_id - b, sizeof(r.flow_id)),
        "ip_len": _f(<char*>&r.ip_len - b, sizeof(r.ip_len)),
        "payload_len": _f(<char*>&r.payload_len - b, sizeof(r.payload_len)),
        "sport": _f(<char*>&r.sport - b, sizeof(r.sport)),
        "dport": _f(<char*>&r.dport - b, sizeof(r.dport)),
        "ip_version": _f(<char*>&r.ip_version - b, sizeof(r.ip_version)),
        "proto": _f(<char*>&r.proto - b, sizeof(r.proto)),
        "tcp_flags": _f(<char*>&r.tcp_flags - b, sizeof(r.tcp_flags)),
        "events": _f(<char*>&r.events - b, sizeof(r.events)),
        "src": _f(<char*>&r.src[0] - b, sizeof(r.src)),
        "dst": _f(<char*>&r.dst[0] - b, sizeof(r.dst)),
    }


def c_layouts():
    """{record name: (C struct size, {field: (C offset, C size)})} for every record type."""
    return {
        "flow": (sizeof(nw_flow_rec), _flow_layout()),
        "arp": (sizeof(nw_arp_rec), _arp_layout()),
        "pktsum": (sizeof(nw_pktsum_rec), _pktsum_layout()),
    }


def check_record_layouts(check=None):
    """Compare every C record struct with its dtype; SchemaError on any difference.

    ``check`` defaults to ``sensor.schema.check_layout``. Beyond it, every dtype field must
    have a C counterpart of the same size, so an added or retyped field is caught too.
    """
    from sensor import schema
    if check is None:
        check = schema.check_layout
    for name, (size, fields) in c_layouts().items():
        dt = schema.RECORD_TYPES[name]
        missing = [f for f in dt.names if f not in fields]
        if missing:
            raise SchemaError(f"{name}: dtype fields {missing} have no C counterpart")
        check(name, size, {f: off for f, (off, _) in fields.items()})
        # check_layout compares offsets; a field whose type changed in place
        # (u2 -> u4 at the end of padding, S40 -> S48) shows only in its size.
        for f, (_, fsize) in fields.items():
            if dt.fields[f][0].itemsize != fsize:
                raise SchemaError(
                    f"{name}.{f}: C field is {fsize} bytes, dtype field is "
                    f"{dt.fields[f][0].itemsize}")
