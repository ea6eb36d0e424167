"""Array planning: site limits, queue capacity, packing, order."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.core.planning import Limits, Plan, plan_arrays, task_parallelism, task_resources
from campaigns.core.spec import JobGroup, Resources

ONE_CPU = Resources(time_minutes=30)
FOUR_CPU = Resources(cpus_per_task=4, time_minutes=30, memory_mb=1000)
MPI = Resources(nodes=1, ntasks_per_node=8, cpus_per_task=2, time_minutes=45)
GROUPS = {0: JobGroup(0, ONE_CPU, 3), 1: JobGroup(1, FOUR_CPU, 3), 2: JobGroup(2, MPI, 1)}


def plan(
    pending,
    *,
    batch_size=100,
    max_array_size=None,
    jobs_per_task=1,
    capacity=10**6,
    limit=None,
    groups=GROUPS,
) -> Plan:
    return plan_arrays(
        pending,
        groups,
        Limits(batch_size, max_array_size, jobs_per_task, 256, capacity),
        capacity=capacity,
        limit=limit,
    )


def planned_ids(result: Plan) -> list[int]:
    return [job for array in result.arrays for task in array.tasks for job in task]


def test_batch_size_caps_arrays() -> None:
    result = plan([(i, 0) for i in range(1, 251)], batch_size=100)
    assert [len(a.tasks) for a in result.arrays] == [100, 100, 50]
    assert planned_ids(result) == list(range(1, 251)) and result.waiting == 0


def test_site_max_array_size_caps_arrays_below_batch_size() -> None:
    result = plan([(i, 0) for i in range(2500)], batch_size=1000, max_array_size=1001)
    assert [len(a.tasks) for a in result.arrays] == [1000, 1000, 500]
    result = plan([(i, 0) for i in range(2500)], batch_size=5000, max_array_size=1001)
    assert [len(a.tasks) for a in result.arrays] == [1001, 1001, 498]


def test_degenerate_sizes_still_make_progress() -> None:
    result = plan([(1, 0), (2, 0)], batch_size=0, max_array_size=0)
    assert [len(a.tasks) for a in result.arrays] == [1, 1]


def test_arrays_never_mix_groups() -> None:
    pending = [(i, i % 3) for i in range(30)]
    result = plan(pending, batch_size=4)
    for array in result.arrays:
        assert {dict(pending)[j] for t in array.tasks for j in t} == {array.group}
    assert sorted(planned_ids(result)) == list(range(30))


def test_capacity_caps_queued_tasks_and_the_rest_waits() -> None:
    result = plan([(i, 0) for i in range(100)], batch_size=30, capacity=45)
    assert [len(a.tasks) for a in result.arrays] == [30, 15]
    assert result.waiting == 55 and result.capacity == 45
    assert planned_ids(result) == list(range(45))


@pytest.mark.parametrize("capacity", [0, -5])
def test_no_capacity_plans_nothing(capacity: int) -> None:
    result = plan([(i, 0) for i in range(10)], capacity=capacity)
    assert result.arrays == () and result.waiting == 10


def test_capacity_counts_tasks_not_jobs() -> None:
    result = plan([(i, 1) for i in range(100)], jobs_per_task=4, capacity=10)
    assert sum(len(a.tasks) for a in result.arrays) == 10
    assert result.arrays[0].n_jobs == 40 and result.waiting == 60


def test_limit_counts_jobs() -> None:
    result = plan([(i, 0) for i in range(100)], limit=7)
    assert planned_ids(result) == list(range(7)) and result.waiting == 93
    assert plan([(i, 0) for i in range(5)], limit=50).waiting == 0
    assert plan([(i, 0) for i in range(5)], limit=0).arrays == ()
    assert plan([(i, 0) for i in range(5)], limit=-3).waiting == 5


def test_packing_jobs_per_task_in_order() -> None:
    result = plan([(i, 1) for i in range(10)], jobs_per_task=4, batch_size=2)
    assert [a.tasks for a in result.arrays] == [((0, 1, 2, 3), (4, 5, 6, 7)), ((8, 9),)]
    assert [a.n_jobs for a in result.arrays] == [8, 2]


def test_first_pending_jobs_go_first_across_groups() -> None:
    # Groups interleave (an override on one snapshot of every realization); under a queue
    # cap the jobs submitted are the first ones listed, not all of one group first.
    pending = [(i, 0 if i % 4 == 0 else 1) for i in range(40)]
    result = plan(pending, capacity=10)
    assert sorted(planned_ids(result)) == list(range(10))
    assert result.waiting == 30


def test_job_order_is_kept_within_arrays() -> None:
    pending = [(9, 1), (3, 0), (7, 1), (1, 1), (8, 0), (2, 0)]
    result = plan(pending)
    assert [(a.group, planned_ids(Plan((a,), 0, 0))) for a in result.arrays] == [
        (1, [9, 7, 1]),
        (0, [3, 8, 2]),
    ]


def test_array_resources_come_from_the_group() -> None:
    result = plan([(1, 2), (2, 0)])
    assert {a.group: a.resources for a in result.arrays} == {2: MPI, 0: ONE_CPU}
    assert all(a.parallel == 1 for a in result.arrays)


# -- packed task resources --------------------------------------------------------------


@pytest.mark.parametrize(
    "resources, k, parallel, minutes",
    [
        (ONE_CPU, 1, 1, 30),
        (ONE_CPU, 4, 1, 120),  # one CPU: four jobs one after another
        (FOUR_CPU, 4, 4, 30),  # four CPUs: one wave
        (FOUR_CPU, 6, 4, 60),  # two waves
        (FOUR_CPU, 9, 4, 90),
        (FOUR_CPU, 2, 2, 30),
        (MPI, 3, 1, 135),  # multi-task (MPI) jobs never share a task's CPUs
    ],
)
def test_task_resources_scale_time_by_waves(
    resources: Resources, k: int, parallel: int, minutes: int
) -> None:
    assert task_parallelism(resources, k) == parallel
    scaled = task_resources(resources, k)
    assert scaled.time_minutes == minutes
    memory = resources.memory_mb * parallel if resources.memory_mb else resources.memory_mb
    assert scaled.memory_mb == memory  # the jobs running at once each need their memory
    assert (
        replace(scaled, time_minutes=resources.time_minutes, memory_mb=resources.memory_mb)
        == resources
    )


def test_plan_uses_scaled_resources() -> None:
    result = plan([(i, 1) for i in range(6)], jobs_per_task=6)
    (array,) = result.arrays
    assert array.resources.time_minutes == 60 and array.parallel == 4


# -- properties -------------------------------------------------------------------------


@st.composite
def pending_jobs(draw):
    n = draw(st.integers(0, 300))
    ids = draw(st.permutations(list(range(1, n + 1))))
    groups = draw(st.lists(st.sampled_from(sorted(GROUPS)), min_size=n, max_size=n))
    return list(zip(ids, groups, strict=True))


@settings(max_examples=150, deadline=None)
@given(
    pending_jobs(),
    st.integers(1, 60),
    st.one_of(st.none(), st.integers(1, 60)),
    st.integers(1, 5),
    st.integers(0, 400),
    st.one_of(st.none(), st.integers(0, 400)),
)
def test_plan_properties(
    pending, batch_size, max_array_size, jobs_per_task, capacity, limit
) -> None:
    result = plan(
        pending,
        batch_size=batch_size,
        max_array_size=max_array_size,
        jobs_per_task=jobs_per_task,
        capacity=capacity,
        limit=limit,
    )
    ids = planned_ids(result)
    group_of = dict(pending)
    # Every planned job appears exactly once, and the planned jobs are the first pending ones.
    assert len(ids) == len(set(ids))
    assert set(ids) == {job for job, _ in pending[: len(ids)]}
    assert result.waiting == len(pending) - len(ids)
    if limit is not None:
        assert len(ids) <= limit
    per_array = batch_size if max_array_size is None else min(batch_size, max_array_size)
    assert sum(len(a.tasks) for a in result.arrays) <= capacity
    position = {job: i for i, (job, _) in enumerate(pending)}
    for array in result.arrays:
        assert 1 <= len(array.tasks) <= per_array
        assert all(1 <= len(task) <= jobs_per_task for task in array.tasks)
        jobs = [j for t in array.tasks for j in t]
        assert {group_of[j] for j in jobs} == {array.group}
        assert [position[j] for j in jobs] == sorted(position[j] for j in jobs)
    # Nothing left behind needlessly: with room and budget to spare, everything is planned.
    budget = len(pending) if limit is None else min(limit, len(pending))
    if capacity >= len(pending):
        assert len(ids) == budget


def test_packed_task_asks_for_the_memory_of_the_jobs_it_runs_at_once() -> None:
    from campaigns.core.planning import task_resources
    from campaigns.core.spec import Resources

    base = Resources(cpus_per_task=4, memory_mb=1000, time_minutes=10)
    packed = task_resources(base, 8)  # 4 at a time, 2 waves
    assert (packed.memory_mb, packed.time_minutes) == (4000, 20)
    mpi = Resources(ntasks_per_node=2, memory_mb=1000, time_minutes=10)
    assert (task_resources(mpi, 3).memory_mb, task_resources(mpi, 3).time_minutes) == (1000, 30)
    assert task_resources(Resources(memory_mb=None), 5).memory_mb is None
