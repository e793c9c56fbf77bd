"""`manage.py beat_locked`: Celery beat guarded by a Redis lock (edc.beat_lock), so that beat may be
started on several nodes and exactly one runs (docs/deployment.md, "Several machines")."""

import logging
import os
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from edc.beat_lock import BeatLock

log = logging.getLogger("edc.beat")


class Command(BaseCommand):
    help = "Run Celery beat on this node once it holds the beat lock in Redis; wait while another node holds it."

    def add_arguments(self, parser):
        parser.add_argument("--ttl", type=float, default=30.0, help="lock expiry in seconds, renewed every ttl/3 (default 30)")
        parser.add_argument("--poll", type=float, default=5.0, help="seconds between attempts while another node holds it")
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args, **options):
        if not settings.REDIS_URL:
            raise CommandError("beat_locked needs REDIS_URL (the lock lives in Redis)")
        lock = BeatLock(settings.REDIS_URL, ttl=options["ttl"])
        while not lock.acquire():
            log.warning("beat lock held by %s: waiting", lock.holder())
            time.sleep(options["poll"])
        log.warning("beat lock taken (%s): starting beat", lock.token)

        def renew() -> None:
            while True:
                time.sleep(options["ttl"] / 3)
                if not lock.renew():
                    # Another node may run beat now: stop at once rather than send every tick twice.
                    log.error("beat lock lost: stopping beat on this node")
                    os._exit(3)

        threading.Thread(target=renew, daemon=True, name="beat-lock").start()
        from edc.celery import app

        try:
            app.Beat(loglevel=options["loglevel"], scheduler=settings.CELERY_BEAT_SCHEDULER).run()
        finally:
            lock.release()
