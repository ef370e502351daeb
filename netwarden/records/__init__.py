"""The one versioned record schema both ends share: numpy dtypes (``schema.py``) and the C
structs the compiled engine writes (``records.h``), checked against each other at import."""
