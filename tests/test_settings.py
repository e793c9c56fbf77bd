"""The environment decides the deployment: demo by default, production only when complete."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.http import HttpRequest

from trials.protocol.auth import demo_passwords

STRONG_KEY = "kq3v9-LZp2#xT8mW4rB7nY1cF6hJ0sD5gA2eU9iO3wQ7zX4vN8mK1lP6jH0tR5yE"
PRODUCTION = {
    "DJANGO_ENV": "production",
    "DJANGO_SECRET_KEY": STRONG_KEY,
    "ALLOWED_HOSTS": "edc.example.org",
    "DATABASE_URL": "postgres://edc@db.example.org:5432/edc",
    "REDIS_URL": "redis://cache.example.org:6379/0",
}


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION and k not in {"DJANGO_DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE", "REPLICA_DATABASE_URL"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_passes_check_deploy_without_warnings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL"])
def test_production_refuses_to_start_without(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert f"DJANGO_ENV=production refuses to start without {missing}" in result.stderr


def test_production_refuses_a_weak_key_and_debug():
    weak = run_manage("check", env={**PRODUCTION, "DJANGO_SECRET_KEY": "django-insecure-short"})
    assert weak.returncode != 0 and "DJANGO_SECRET_KEY is too weak" in weak.stderr
    debug = run_manage("check", env={**PRODUCTION, "DJANGO_DEBUG": "true"})
    assert debug.returncode != 0 and "DJANGO_DEBUG cannot be on in production" in debug.stderr


def test_unknown_environment_name_is_refused():
    result = run_manage("check", env={"DJANGO_ENV": "prod"})
    assert result.returncode != 0 and "use 'development' or 'production'" in result.stderr


def test_embedded_default_is_sqlite_and_eager_when_nothing_is_set(tmp_path):
    script = (
        "import django;django.setup();from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_TASK_ALWAYS_EAGER, s.DEBUG, s.ALLOWED_HOSTS, s.USE_TZ, s.EMAIL_BACKEND)"
    )
    clean = {
        k: v for k, v in os.environ.items()
        if k not in PRODUCTION and k not in {"DJANGO_DEBUG", "EDC_VAR_DIR", "DJANGO_ALLOW_ASYNC_UNSAFE", "REPLICA_DATABASE_URL"}
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=settings.BASE_DIR,
        env={**clean, "DJANGO_SETTINGS_MODULE": "edc.settings", "EDC_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == [
        "django.db.backends.sqlite3", "True", "True", "['127.0.0.1',", "'localhost',", "'[::1]']", "True",
        "django.core.mail.backends.console.EmailBackend",
    ], result.stderr
    assert (tmp_path / "edc.sqlite3").parent.exists()


@pytest.mark.django_db
def test_demo_passwords_are_refused_in_production(demo_users, settings):
    user = get_user_model().objects.get(username="coordinator.toulouse")
    password = "demo-Coord-Toulouse-26"
    assert password in demo_passwords()
    assert authenticate(HttpRequest(), username=user.username, password=password) == user  # django-axes needs the request
    settings.IS_PRODUCTION = True
    assert authenticate(HttpRequest(), username=user.username, password=password) is None


def test_load_demo_refuses_in_production():
    result = run_manage("load_demo", env=PRODUCTION)
    assert result.returncode != 0 and "refuses to run with DJANGO_ENV=production" in result.stderr
