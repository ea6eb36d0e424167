"""The state machine: Slurm states, verdicts from manifests and tasks, allowed transitions."""

from __future__ import annotations

import pytest

from campaigns.core.states import (
    ALL_STATES,
    TRANSITIONS,
    FailureClass,
    JobState,
    TaskState,
    Verdict,
    can_transition,
    from_slurm,
    judge,
)

#: Slurm's state words (squeue/sacct), grouped by the state they mean to us.
SLURM_WORDS = {
    TaskState.PENDING: "PENDING CONFIGURING REQUEUED REQUEUE_FED REQUEUE_HOLD RESV_DEL_HOLD",
    TaskState.RUNNING: "RUNNING COMPLETING SUSPENDED STAGE_OUT SIGNALING RESIZING STOPPED",
    TaskState.COMPLETED: "COMPLETED",
    TaskState.FAILED: "FAILED SPECIAL_EXIT",
    TaskState.TIMEOUT: "TIMEOUT DEADLINE",
    TaskState.OUT_OF_MEMORY: "OUT_OF_MEMORY",
    TaskState.NODE_FAIL: "NODE_FAIL",
    TaskState.PREEMPTED: "PREEMPTED",
    TaskState.BOOT_FAIL: "BOOT_FAIL",
    TaskState.CANCELLED: "CANCELLED REVOKED",
}
SLURM_STATES = {word: state for state, words in SLURM_WORDS.items() for word in words.split()}
#: Task ends that are the scheduler's doing; each has the failure class of the same name.
KILLS = ["TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "CANCELLED", "BOOT_FAIL"]


@pytest.mark.parametrize("word, state", sorted(SLURM_STATES.items()))
def test_every_slurm_state_word(word: str, state: TaskState) -> None:
    assert from_slurm(word) is state
    assert from_slurm(word.lower()) is state
    assert from_slurm(f"  {word}+ ") is state


@pytest.mark.parametrize(
    "text, state",
    [
        ("CANCELLED by 0", TaskState.CANCELLED),
        ("CANCELLED by 12345", TaskState.CANCELLED),
        ("CANCELLED+", TaskState.CANCELLED),
        ("OUT_OF_MEMORY+", TaskState.OUT_OF_MEMORY),
        ("TIMEOUT+", TaskState.TIMEOUT),
        ("", TaskState.UNKNOWN),
        ("   ", TaskState.UNKNOWN),
        ("WEIRD_NEW_STATE", TaskState.UNKNOWN),
        ("RUNNINGX", TaskState.UNKNOWN),
        ("+", TaskState.UNKNOWN),
    ],
)
def test_slurm_state_decorations_and_unknown_words(text: str, state: TaskState) -> None:
    assert from_slurm(text) is state


def test_final_task_states() -> None:
    open_states = {TaskState.PENDING, TaskState.RUNNING, TaskState.UNKNOWN}
    for state in TaskState:
        assert state.is_final == (state not in open_states)


# -- judge ---------------------------------------------------------------------------


@pytest.mark.parametrize("task", list(TaskState))
def test_manifest_exit_zero_means_completed_whatever_the_task_says(task: TaskState) -> None:
    verdict = judge(task, {"exit_code": 0, "failure": None})
    assert verdict == Verdict(JobState.COMPLETED, exit_code=0)


def test_manifest_missing_output_is_a_failure() -> None:
    verdict = judge(
        TaskState.COMPLETED,
        {"exit_code": 0, "failure": "missing_output", "error": "no file r0/x.h5"},
    )
    assert verdict.state is JobState.FAILED
    assert verdict.failure is FailureClass.MISSING_OUTPUT
    assert verdict.exit_code == 0 and verdict.error == "no file r0/x.h5"


@pytest.mark.parametrize(
    "task, failure",
    [(TaskState(name), FailureClass(name.lower())) for name in KILLS],
)
def test_a_scheduler_kill_beats_the_bare_exit_code(task: TaskState, failure: FailureClass) -> None:
    verdict = judge(task, {"exit_code": 137, "failure": "exit_code", "error": "exit code 137"})
    assert verdict.state is JobState.FAILED and verdict.failure is failure
    assert verdict.exit_code == 137
    assert task.value in (verdict.error or "")


@pytest.mark.parametrize(
    "task", [TaskState.FAILED, TaskState.COMPLETED, TaskState.RUNNING, TaskState.UNKNOWN]
)
def test_manifest_exit_code_failure_without_a_kill(task: TaskState) -> None:
    verdict = judge(task, {"exit_code": 3, "failure": "exit_code", "error": "boom"})
    assert verdict == Verdict(JobState.FAILED, FailureClass.EXIT_CODE, 3, "boom")


def test_manifest_nonzero_exit_without_failure_field() -> None:
    verdict = judge(TaskState.FAILED, {"exit_code": 2})
    assert verdict == Verdict(JobState.FAILED, FailureClass.EXIT_CODE, 2, "exit code 2")


def test_manifest_own_failure_class_is_kept_even_under_a_kill() -> None:
    verdict = judge(TaskState.TIMEOUT, {"exit_code": 0, "failure": "missing_output"})
    assert verdict.failure is FailureClass.MISSING_OUTPUT


def test_manifest_with_a_failure_class_this_version_lacks_does_not_crash() -> None:
    verdict = judge(TaskState.FAILED, {"exit_code": 1, "failure": "gremlins", "error": "x"})
    assert verdict.state is JobState.FAILED and verdict.failure is FailureClass.EXIT_CODE


@pytest.mark.parametrize(
    "task, failure",
    [
        (TaskState.FAILED, FailureClass.EXIT_CODE),
        *[(TaskState(name), FailureClass(name.lower())) for name in KILLS],
        (TaskState.COMPLETED, FailureClass.LOST),  # ended "well" but left no manifest
        (TaskState.LOST, FailureClass.LOST),
    ],
)
def test_no_manifest_and_a_final_task(task: TaskState, failure: FailureClass) -> None:
    verdict = judge(task, None)
    assert verdict.state is JobState.FAILED and verdict.failure is failure
    assert verdict.exit_code is None and verdict.error


def test_every_final_task_state_has_a_verdict_without_manifest() -> None:
    for task in TaskState:
        verdict = judge(task, None)
        if task.is_final:
            assert verdict.state is JobState.FAILED and verdict.failure is not None


def test_open_tasks_without_manifest() -> None:
    assert judge(TaskState.PENDING, None) == Verdict(JobState.QUEUED)
    assert judge(TaskState.RUNNING, None) == Verdict(JobState.RUNNING)
    assert judge(TaskState.UNKNOWN, None) == Verdict(JobState.QUEUED)
    lost = judge(TaskState.UNKNOWN, None, lost=True)
    assert lost.state is JobState.FAILED and lost.failure is FailureClass.LOST
    # `lost` only matters while the scheduler cannot say anything.
    assert judge(TaskState.RUNNING, None, lost=True) == Verdict(JobState.RUNNING)
    assert judge(TaskState.UNKNOWN, {"exit_code": 0}, lost=True).state is JobState.COMPLETED


# -- transitions -----------------------------------------------------------------------

ALLOWED = {
    ("pending", "queued"),
    ("pending", "cancelled"),
    ("queued", "pending"),
    ("queued", "running"),
    ("queued", "completed"),
    ("queued", "failed"),
    ("queued", "cancelled"),
    ("running", "completed"),
    ("running", "failed"),
    ("running", "cancelled"),
    ("completed", "failed"),  # qa --requeue
    ("completed", "pending"),  # retry --reset
    ("failed", "pending"),
    ("cancelled", "pending"),
}


@pytest.mark.parametrize("old", list(JobState))
@pytest.mark.parametrize("new", list(JobState))
def test_transition_table(old: JobState, new: JobState) -> None:
    expected = old == new or (old.value, new.value) in ALLOWED
    assert can_transition(old, new) is expected


def test_transition_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(JobState)
    assert ALL_STATES == ("pending", "queued", "running", "completed", "failed", "cancelled")
    assert {s for s in JobState if s.is_open} == {JobState.QUEUED, JobState.RUNNING}
    assert JobState("queued") is JobState.QUEUED and JobState.QUEUED == "queued"
