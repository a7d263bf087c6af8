"""The Open Inference Protocol (KServe V2) over gRPC: the .proto, its generated modules, the replica's service."""
