"""Where packets come from: ``PacketBatch`` (``batch``), the AF_PACKET TPACKET_V3 ring
(``afpacket`` sets the socket up, ``_ring`` walks it) and BPF filters (``bpf``). Capture
files are read by each engine backend's own ``PcapReader`` (the compiled one maps the file
and decodes in the same translation unit), see ``sensor.engine``."""
