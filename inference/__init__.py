"""ONNX inference replica (Open Inference Protocol V2): server, protocol, batching, metrics, load generator."""
