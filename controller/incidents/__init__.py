"""Incidents: alerts grouped into stories with priority, lifecycle, feedback and escalation."""
