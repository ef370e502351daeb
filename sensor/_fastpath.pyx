# cython: language_level=3
"""Placeholder: the Cython flow engine is being written (see sensor/_fastpath_py.py)."""
