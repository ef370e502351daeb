"""The copilot: plain-language summaries, recommendations and explanations, offline."""
