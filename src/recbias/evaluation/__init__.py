"""Prediction files (ours and the peers') and metric tables."""

from recbias.evaluation.predictions import (
    StoredPredictions,
    export_peer_json,
    read_predictions_jsonl,
    write_peer_item_file,
    write_predictions_jsonl,
)
from recbias.evaluation.summary import (
    format_value,
    metrics_table_markdown,
    write_metrics_json,
)

__all__ = [
    "StoredPredictions",
    "export_peer_json",
    "format_value",
    "metrics_table_markdown",
    "read_predictions_jsonl",
    "write_metrics_json",
    "write_peer_item_file",
    "write_predictions_jsonl",
]
