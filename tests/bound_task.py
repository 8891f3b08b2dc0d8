"""What the runner uses of a bound Celery task, for tests that call `runner.execute` in this
process: its request, `update_state`, and `retry`, whose countdowns are recorded and whose
Retry is a `Retried` to raise."""


class Retried(Exception):
    pass


class BoundTask:
    class request:
        id = "task-1"
        hostname = "worker@test"

    def __init__(self) -> None:
        self.countdowns: list[float] = []

    def retry(self, countdown: float, max_retries=None, exc=None, throw=True):
        self.countdowns.append(countdown)
        return Retried(str(exc))

    def update_state(self, **kwargs) -> None:
        pass
