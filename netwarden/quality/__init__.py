"""Detection quality an operator can measure, and policy changes they can try first.

``replaying`` runs captures through the detection stack as ``netwarden replay`` does;
``labels`` reads a labelled-capture table and the deadlines per kind; ``evaluate`` judges
alerts against labels (``netwarden eval``); ``tune`` proposes per-kind thresholds for a
target false-alert rate (``netwarden tune``); ``simulate`` replays captures through the
policy of two configs in dry run and shows the difference (``netwarden simulate``);
``charts`` draws their plots with the report's machinery.
"""
