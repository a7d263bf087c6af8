"""The committed gRPC modules match grpc_predict_v2.proto, and the proto matches the ecosystem's (Triton's client)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from inference.v2grpc import generate
from inference.v2grpc import grpc_predict_v2_pb2 as ours


def _file_proto(descriptor: object) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor.CopyToProto(proto)  # type: ignore[attr-defined]
    return proto


def test_the_committed_modules_are_what_the_proto_generates(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    fresh = generate.generate(tmp_path)
    committed = {name: (generate.HERE / name).read_text() for name in generate.MODULES}

    def without_versions(text: str) -> str:  # the generator's own version lines may differ between machines
        return "\n".join(line for line in text.splitlines() if "_VERSION = " not in line)

    namespace: dict[str, object] = {}
    exec(compile(fresh["grpc_predict_v2_pb2.py"], "fresh_pb2", "exec"), namespace)
    assert _file_proto(namespace["DESCRIPTOR"]) == _file_proto(ours.DESCRIPTOR), "run python -m inference.v2grpc.generate"
    for name in ("grpc_predict_v2_pb2_grpc.py", "grpc_predict_v2_pb2.pyi"):
        assert without_versions(fresh[name]) == without_versions(committed[name]), f"{name}: regenerate it"


def _messages(file_proto: descriptor_pb2.FileDescriptorProto) -> dict[str, descriptor_pb2.DescriptorProto]:
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, messages: object) -> None:
        for message in messages:  # type: ignore[attr-defined]
            found[prefix + message.name] = message
            walk(prefix + message.name + ".", message.nested_type)

    walk("", file_proto.message_type)
    return found


def test_package_service_messages_and_field_numbers_match_tritons_published_proto() -> None:
    service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2")
    mine, theirs = _file_proto(ours.DESCRIPTOR), _file_proto(service_pb2.DESCRIPTOR)
    assert mine.package == theirs.package == "inference"
    their_messages = _messages(theirs)
    for name, message in _messages(mine).items():
        assert name in their_messages, f"message {name} is not in Triton's proto"
        their_fields = {field.number: field for field in their_messages[name].field}
        for field in message.field:
            twin = their_fields.get(field.number)
            assert twin is not None, f"{name}.{field.name} = {field.number} is not in Triton's proto"
            assert (twin.name, twin.type, twin.label, twin.type_name) == (
                field.name, field.type, field.label, field.type_name,
            ), f"{name}.{field.name} differs from Triton's"  # fmt: skip
    (service,) = mine.service
    their_service = next(s for s in theirs.service if s.name == service.name == "GRPCInferenceService")
    their_methods = {method.name: method for method in their_service.method}
    assert [m.name for m in service.method] == [
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
    ]  # fmt: skip
    for method in service.method:
        twin = their_methods[method.name]
        assert (twin.input_type, twin.output_type) == (method.input_type, method.output_type)
