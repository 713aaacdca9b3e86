"""What a reviewer reads about a trained encoder: the champion/challenger gate, the model card, the plots.
Plain Python over probe reports (ssl_ops.probes.report); registering them (MLflow) is the assets' job."""

from ssl_ops.review.card import model_card
from ssl_ops.review.gate import GateConfig, GateDecision, PRIMARY_METRICS, decide

__all__ = ["GateConfig", "GateDecision", "PRIMARY_METRICS", "decide", "model_card"]
