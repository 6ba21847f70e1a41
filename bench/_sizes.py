"""How much of everything the benchmark does: the default sizes and ``--quick``'s."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Election", "Sizes", "full", "quick"]


@dataclass(frozen=True)
class Election:
    """Settings of the kubernetes client's leader election (its ``Config`` has no
    defaults; these are the values of its ``leaderelection/example.py``)."""

    lease_duration: int = 17
    renew_deadline: int = 15
    retry_period: int = 5

    def describe(self) -> str:
        return (
            f"lease_duration={self.lease_duration}s, renew_deadline={self.renew_deadline}s, "
            f"retry_period={self.retry_period}s"
        )


@dataclass(frozen=True)
class Sizes:
    """Counts, windows and intervals of every figure."""

    quick: bool = False
    op_repeats: int = 5  # requests per operation: median over this many repeats
    cycles: int = 200  # uncontended acquire+release cycles
    handoffs: int = 50
    raw_puts: int = 200
    rounds: int = 5  # hand-offs and reference PUTs are taken in this many interleaved rounds
    election_pairs: int = 6  # leader-election hand-offs (each waits out a lease), in parallel
    election_window: float = 20.0  # requests of a steady leader, seconds
    contenders: tuple[int, ...] = (2, 8, 32)
    window: float = 10.0  # contended throughput window, seconds
    # The window at the most contenders, long enough for the fairness figures to
    # rest on 1,000 acquisitions or more (None: ``window``).
    fair_window: float | None = None
    many_tasks: tuple[int, int] = (128, 4)  # asyncio contenders, and the processes they run in
    renew_interval: float = 1.0
    renew_window: float = 10.0
    renew_locks: int = 16  # locks held at once for the renewal load (divided out)
    many_locks: int = 1000
    many_interval: float = 10.0
    many_duration: float = 30.0
    many_window: float = 30.0
    listing: tuple[int, ...] = (100, 1000, 10000)
    list_repeats: int = 5
    import_runs: int = 15
    election: Election = Election()


def full() -> Sizes:
    """The default sizes: the run at 32 contenders takes 40 s, so that the fairness
    figures rest on 1,000 acquisitions or more (about 25/s is enough)."""
    return Sizes(fair_window=40.0)


def quick() -> Sizes:
    """The smallest sizes for the smoke test: every code path, no meaningful numbers.

    One of each where one runs the code: one repeat, one round, one contender
    count, one listing repeat; two listing sizes, so that the second fills on
    top of the first; windows of a second or less; the shortest leader-election
    timings the kubernetes client and client-go accept (whole seconds, lease >
    renew deadline > 1.2 x retry period)."""
    return Sizes(
        quick=True,
        op_repeats=1,
        cycles=3,
        handoffs=2,
        raw_puts=3,
        rounds=1,
        election_pairs=1,
        election_window=0.5,
        contenders=(2,),
        window=0.5,
        many_tasks=(4, 2),
        renew_window=1.0,
        renew_locks=2,
        many_locks=10,
        many_interval=1.0,
        many_duration=5.0,
        many_window=1.0,
        listing=(5, 10),
        list_repeats=1,
        import_runs=1,
        election=Election(lease_duration=3, renew_deadline=2, retry_period=1),
    )
