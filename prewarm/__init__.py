"""prewarm: a predictive autoscaler for ONNX model-inference services.

This package holds what every part shares: settings, the database schema and the metrics store, and the CLI.
"""

__version__ = "0.1.0"
