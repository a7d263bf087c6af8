"""The pooled backend over one plain backend per pool (Swarm's service per pool), and the dry-run's record."""

from __future__ import annotations

from controller.backends.base import PoolCounts, PooledBackend, ReplicaBackend, scale_placement
from controller.backends.dry_run import DryRunBackend
from controller.backends.pools import PoolsBackend


class Logged(DryRunBackend):
    def __init__(self, name: str, log: list[tuple[str, int]]) -> None:
        super().__init__(initial_replicas=0)
        self.pool_name, self.log = name, log

    def scale_to(self, replicas: int) -> None:
        self.log.append((self.pool_name, replicas))
        super().scale_to(replicas)


def test_pools_grow_before_others_shrink_and_sum_up() -> None:
    log: list[tuple[str, int]] = []
    children: dict[str, ReplicaBackend] = {p: Logged(p, log) for p in ("spot", "on-demand")}
    backend = PoolsBackend("swarm", children, {"spot": "spot", "on-demand": "on-demand"})
    assert isinstance(backend, PooledBackend)
    backend.scale_to(5)  # no placement: all on demand
    assert log == [("on-demand", 5)]
    log.clear()
    scale_placement(backend, {"spot": 3, "on-demand": 2})
    assert log == [("spot", 3), ("on-demand", 2)]  # the move adds spot first
    assert backend.desired_count() == 5 and backend.ready_count() == 5
    assert backend.pool_counts() == {"spot": PoolCounts(3, 3), "on-demand": PoolCounts(2, 2)}
    assert {r.pool for r in backend.replicas()} == {"spot", "on-demand"}


def test_dry_run_records_the_placement_and_a_plain_backend_gets_the_total() -> None:
    dry = DryRunBackend(initial_replicas=1)
    scale_placement(dry, {"reserved": 2, "spot": 1})
    assert dry.requests[-1].pools == {"reserved": 2, "spot": 1} and dry.requests[-1].replicas == 3
    assert dry.pool_counts() == {"reserved": PoolCounts(2, 2), "spot": PoolCounts(1, 1)}

    class Plain:
        name = "plain"

        def __init__(self) -> None:
            self.asked: list[int] = []

        def scale_to(self, replicas: int) -> None:
            self.asked.append(replicas)

    plain = Plain()
    scale_placement(plain, {"reserved": 2, "spot": 1})  # type: ignore[arg-type]
    assert plain.asked == [3]
