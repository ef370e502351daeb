"""Firewall backends behind one Enforcer contract."""
