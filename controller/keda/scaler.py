"""KEDA's external scaler served by the controller: prewarm's decision as a metric a ScaledObject scales on.

Two modes, chosen per trigger by ``metadata.mode``:

- ``replicas`` (default): the metric is the replica count prewarm decided, with a target of 1 per replica, so
  KEDA's HPA (``ceil(value / target)`` for an AverageValue metric) lands on prewarm's count. Pair it with a
  deployment whose backend is ``keda``: prewarm decides and records, KEDA applies.
- ``forecast``: the metric is the upper forecast band over the decision window (rps), with the policy's planned
  load per replica as the target: the forecast as one signal among the user's other triggers. When no forecast is
  usable it reports prewarm's count in the same unit (count x target), never a silent zero.

``metadata.deployment`` names the prewarm deployment (default: the ScaledObject's name). Values come from the
controller that owns the deployment (from memory when it is this one, else from the status its owner stored); a
deployment no controller has decided for a minute answers UNAVAILABLE, so KEDA applies the ScaledObject's
``fallback``. Unknown deployments are NOT_FOUND, bad metadata INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from controller.keda import externalscaler_pb2 as pb
from controller.keda import externalscaler_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

MODES = ("replicas", "forecast")
STALE_AFTER_S = 60.0  # a decision older than this is not served: KEDA falls back
STREAM_POLL_S = 1.0


@dataclass(frozen=True)
class ScalerView:
    """What the scaler serves for one deployment."""

    deployment: str
    desired_replicas: int
    forecast_upper_rps: float | None  # None: the forecast was not used in the last decision
    rps_per_replica: float  # the policy's planned load per replica from the forecast
    decided_at: float  # epoch seconds


class ScalerError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


Lookup = Callable[[str], ScalerView | None]  # None: unknown deployment


@dataclass(frozen=True)
class Trigger:
    deployment: str
    mode: str

    @property
    def metric_name(self) -> str:
        return f"prewarm-{self.mode}-{self.deployment}"


def trigger_of(ref: pb.ScaledObjectRef) -> Trigger:
    metadata = dict(ref.scalerMetadata)
    deployment = metadata.get("deployment") or ref.name
    if not deployment:
        raise ScalerError(grpc.StatusCode.INVALID_ARGUMENT, "no deployment: set metadata.deployment on the trigger")
    mode = metadata.get("mode", "replicas")
    if mode not in MODES:
        raise ScalerError(
            grpc.StatusCode.INVALID_ARGUMENT, f"metadata.mode {mode!r} is not one of {', '.join(MODES)}"
        )
    return Trigger(deployment, mode)


def value_of(view: ScalerView, trigger: Trigger) -> float:
    if trigger.mode == "replicas":
        return float(view.desired_replicas)
    if view.forecast_upper_rps is not None and math.isfinite(view.forecast_upper_rps):
        return view.forecast_upper_rps
    return view.desired_replicas * view.rps_per_replica  # prewarm's count in rps when no forecast is usable


def target_of(view: ScalerView, trigger: Trigger) -> float:
    return 1.0 if trigger.mode == "replicas" else view.rps_per_replica


class ExternalScaler(pb_grpc.ExternalScalerServicer):
    """The servicer; ``lookup`` gives a deployment's current view (blocking: it may read the store)."""

    def __init__(self, lookup: Lookup, clock: Callable[[], float] = time.time) -> None:
        self.lookup = lookup
        self.clock = clock
        self.calls = 0

    async def _view(self, trigger: Trigger) -> ScalerView:
        view = await asyncio.to_thread(self.lookup, trigger.deployment)
        if view is None:
            raise ScalerError(grpc.StatusCode.NOT_FOUND, f"unknown prewarm deployment {trigger.deployment!r}")
        age = self.clock() - view.decided_at
        if age > STALE_AFTER_S:
            raise ScalerError(
                grpc.StatusCode.UNAVAILABLE,
                f"deployment {trigger.deployment!r} was last decided {age:.0f} s ago: no controller is deciding it",
            )
        return view

    async def _serve(self, context: grpc.aio.ServicerContext, ref: pb.ScaledObjectRef) -> tuple[Trigger, ScalerView]:
        self.calls += 1
        try:
            trigger = trigger_of(ref)
            return trigger, await self._view(trigger)
        except ScalerError as error:
            await context.abort(error.code, str(error))
            raise  # unreachable: abort raises

    async def IsActive(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> pb.IsActiveResponse:
        trigger, view = await self._serve(context, request)
        return pb.IsActiveResponse(result=value_of(view, trigger) > 0)

    async def StreamIsActive(
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.IsActiveResponse]:
        trigger, view = await self._serve(context, request)
        active = value_of(view, trigger) > 0
        yield pb.IsActiveResponse(result=active)  # the current state at once, then each change
        while True:
            await asyncio.sleep(STREAM_POLL_S)
            try:
                view = await self._view(trigger)
            except ScalerError as error:
                await context.abort(error.code, str(error))
            now_active = value_of(view, trigger) > 0
            if now_active != active:
                active = now_active
                yield pb.IsActiveResponse(result=active)

    async def GetMetricSpec(
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> pb.GetMetricSpecResponse:
        trigger, view = await self._serve(context, request)
        target = target_of(view, trigger)
        spec = pb.MetricSpec(metricName=trigger.metric_name, targetSize=max(1, round(target)), targetSizeFloat=target)
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    async def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMetricsResponse:
        trigger, view = await self._serve(context, request.scaledObjectRef)
        if request.metricName and request.metricName != trigger.metric_name:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"metric {request.metricName!r} is not served for this trigger (expected {trigger.metric_name!r})",
            )
        value = value_of(view, trigger)
        metric = pb.MetricValue(metricName=trigger.metric_name, metricValue=math.ceil(value), metricValueFloat=value)
        return pb.GetMetricsResponse(metricValues=[metric])

    async def StreamMetricSpec(
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GetMetricSpecResponse]:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "prewarm serves GetMetricSpec (KEDA falls back to it)"
        )
        yield pb.GetMetricSpecResponse()  # pragma: no cover (abort raises)


async def start_server(scaler: ExternalScaler, host: str, port: int) -> grpc.aio.Server:
    """A grpc.aio server on the running event loop serving the scaler (and the standard health service)."""
    server = grpc.aio.server()
    pb_grpc.add_ExternalScalerServicer_to_server(scaler, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for KEDA on {host}:{port}")
    await server.start()
    logger.info("KEDA external scaler (externalscaler.ExternalScaler) listening on %s:%d", host, bound)
    return server
