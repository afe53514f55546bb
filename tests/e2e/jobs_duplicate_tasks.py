"""A task module that takes a name the jobs app already uses: a worker importing it must not start."""

from jobs.registry import task


@task(name="echo")
def another_echo() -> None:
    return None
