# Record layout check: the C structs of records.h against the numpy dtypes of schema.py.
#
# Runs once at import. Offsets and sizes come from offsetof/sizeof tables in records.h, so
# they are what the C compiler laid out, not what we hoped it would.

cdef extern from "records.h":
    ctypedef struct nw_field:
        const char* name
        size_t offset
        size_t size
    const nw_field* nw_flow_fields
    const nw_field* nw_arp_fields
    const nw_field* nw_pktsum_fields
    size_t NW_FLOW_NFIELDS
    size_t NW_ARP_NFIELDS
    size_t NW_PKTSUM_NFIELDS


cdef dict _fields(const nw_field* table, size_t n):
    cdef size_t i
    return {table[i].name.decode(): (table[i].offset, table[i].size) for i in range(n)}


def c_layouts():
    """{record name: (C struct size, {field: (offsetof, sizeof)})} for every record type."""
    return {
        "flow": (sizeof(nw_flow_rec), _fields(nw_flow_fields, NW_FLOW_NFIELDS)),
        "arp": (sizeof(nw_arp_rec), _fields(nw_arp_fields, NW_ARP_NFIELDS)),
        "pktsum": (sizeof(nw_pktsum_rec), _fields(nw_pktsum_fields, NW_PKTSUM_NFIELDS)),
    }


def check_record_layouts(check=None):
    """Compare every C record struct with its dtype; SchemaError on any difference.

    ``check`` defaults to ``netwarden.records.schema.check_layout``. Beyond it, every dtype field must
    have a C counterpart of the same size, so an added or retyped field is caught too.
    """
    from netwarden.records import schema
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
