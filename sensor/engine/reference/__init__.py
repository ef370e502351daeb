"""The pure-Python reference twin of the compiled engine; file names mirror the ``.pxi``
files of ``sensor/engine/`` (``decode.py`` <-> ``decode.pxi``, ...), ``fastpath.py`` is the
backend module (``PcapReader``, ``FlowEngine``) like ``_fastpath.pyx``."""
