"""The sensor -> controller bus: wire format (``wire``), the sensor's ``publisher``, the
controller's ``collector`` and CURVE key files (``curve``)."""
