"""Start-up configuration: production refuses to start without what it needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def django_check(env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY"}}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATA_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL"])
def test_fail_production_without_a_required_setting(tmp_path, missing):
    env = {
        "DJANGO_ENV": "production",
        "SECRET_KEY": "x" * 60,
        "ALLOWED_HOSTS": "api.example.com",
        "DATABASE_URL": "postgres://user@db.example.com/fi",
    }
    del env[missing]

    result = django_check(env, tmp_path)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{missing} must be set when DJANGO_ENV=production" in result.stderr


def test_fail_production_with_debug(tmp_path):
    result = django_check(
        {
            "DJANGO_ENV": "production",
            "DEBUG": "true",
            "SECRET_KEY": "x" * 60,
            "ALLOWED_HOSTS": "api.example.com",
            "DATABASE_URL": "postgres://user@db.example.com/fi",
        },
        tmp_path,
    )

    assert result.returncode != 0
    assert "DEBUG must be false" in result.stderr


@pytest.mark.parametrize(("name", "value"), [("DEBUG", "maybe"), ("PAGE_SIZE_MAX", "lots")])
def test_fail_a_malformed_setting_is_named(tmp_path, name, value):
    result = django_check({name: value}, tmp_path)

    assert result.returncode != 0
    assert name in result.stderr


def test_embedded_mode_needs_nothing(tmp_path):
    result = django_check({}, tmp_path)

    assert result.returncode == 0, result.stderr
    # The generated secret key is kept for the next start.
    assert (tmp_path / "secret_key").read_text().strip()


PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "x" * 60,
    "ALLOWED_HOSTS": "api.example.com",
    "DATABASE_URL": "postgres://user@db.example.com/fi",
}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SECRET_KEY", "x", "SECRET_KEY must be at least 50 characters"),
        ("SECRET_KEY", "k" * 49, "SECRET_KEY must be at least 50 characters"),
        ("ALLOWED_HOSTS", "*", "ALLOWED_HOSTS must name the service's hosts"),
        ("ALLOWED_HOSTS", "api.example.com, *", "ALLOWED_HOSTS must name the service's hosts"),
    ],
)
def test_fail_production_with_a_guessable_key_or_any_host(tmp_path, name, value, message):
    result = django_check({**PRODUCTION, name: value}, tmp_path)

    assert result.returncode != 0
    assert message in result.stderr


def test_production_starts_with_a_long_key_and_named_hosts(tmp_path):
    result = django_check({**PRODUCTION, "SECRET_KEY": "k" * 50}, tmp_path)

    assert result.returncode == 0, result.stderr


def test_production_passes_django_s_deployment_checks(tmp_path):
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY"}}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATA_DIR": str(tmp_path),
            **PRODUCTION,
            "SECRET_KEY": "k" * 30 + "Q7-x" * 10,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
