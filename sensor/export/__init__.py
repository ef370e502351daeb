"""Records out of the sensor for people and other tools: Zeek-style conn.log / JSON / CSV
writers (``zeeklog``) and ``netwarden replay``'s summary (``replay_summary``)."""
