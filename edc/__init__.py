"""The project: settings, URLs, audit plumbing, hooks (edc.hooks), Celery, ops; knows no trial app."""

from edc.celery import app as celery_app

__all__ = ("celery_app",)
