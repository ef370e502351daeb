"""NetWarden: network sensor and response controller."""

__version__ = "0.1.0"
