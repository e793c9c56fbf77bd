from celery import shared_task

from edc.ops import services


@shared_task(bind=True)
def heartbeat_answer(self, *, token: str, requested_at: str) -> None:
    """Answer a heartbeat request: write its row (idempotent on the token)."""
    services.heartbeat_record(
        token=token,
        requested_at=requested_at,
        worker=self.request.hostname or "",
        eager=bool(self.request.is_eager),
    )
