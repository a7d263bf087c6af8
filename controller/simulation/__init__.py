"""Trace simulator: replays a request trace through decide() and baseline autoscalers over one cluster model."""

from controller.simulation.cluster import ClusterModel
from controller.simulation.engine import PolicyRun, simulate_closed_loop, simulate_schedule
from controller.simulation.run import SimulationResult, run_simulation

__all__ = [
    "ClusterModel",
    "PolicyRun",
    "SimulationResult",
    "run_simulation",
    "simulate_closed_loop",
    "simulate_schedule",
]
