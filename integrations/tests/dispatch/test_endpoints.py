"""The service sends requests only where it may (no SSRF), and keeps no secret of a URL or of
an answer in what it records."""

from __future__ import annotations

import socket

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from integrations.dispatch import endpoints
from integrations.models import Channel, FailedIntegration, RetryAttempt
from integrations.tests.lifecycle.test_engine import make_due, report, run_worker

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://svc:ftp-pass-123@files.example.com/x", "Only http and https URLs are allowed."),
        ("https://svc:pass-123@app.example.com/retry", "must not carry a user name or password"),
        ("https://app.example.com:99999/retry", "with a port between 1 and 65535"),
        ("https://:443/retry", "The URL must name a host."),
        ("javascript:alert(1)", "Only http and https URLs are allowed."),
    ],
)
def test_a_channel_refuses_an_endpoint_the_service_may_not_call(url, message):
    channel = Channel(name="x", retry_endpoint=url)

    with pytest.raises(ValidationError) as refused:
        channel.full_clean()

    text = " ".join(refused.value.message_dict["retry_endpoint"])
    assert message in text
    assert "pass-123" not in text and "svc" not in text  # the URL is never echoed


def test_public_endpoints_are_fine():
    Channel(name="x", retry_endpoint="https://app.example.com/retry?v=2").full_clean()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
    ],
)
def test_addresses_that_are_not_public_are_refused_unless_allowed(address):
    with override_settings(ALLOWED_ENDPOINT_NETWORKS=[]):
        assert not endpoints.address_allowed(address)
    with override_settings(ALLOWED_ENDPOINT_NETWORKS=["0.0.0.0/0", "::/0"]):
        assert endpoints.address_allowed(address)


def test_public_addresses_are_allowed():
    with override_settings(ALLOWED_ENDPOINT_NETWORKS=[]):
        assert endpoints.address_allowed("93.184.215.14")
        assert endpoints.address_allowed("2606:2800:21f:cb07:6820:80da:af6b:8b2c")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_loopback_endpoint_is_refused_in_production_and_gets_nothing(
    channel, product_type, receiver, host
):
    """A name is checked after it is resolved: `localhost` is loopback too."""
    port = receiver.server.server_address[1]
    channel.retry_endpoint = f"http://{host}:{port}/retry?token=tok-secret-1"
    channel.save()
    failed = report(channel, product_type, retry_interval=600)
    make_due(failed)

    with override_settings(ALLOWED_ENDPOINT_NETWORKS=[]):
        run_worker()

    assert receiver.received == []
    failed.refresh_from_db()
    assert "may not connect to" in failed.last_error
    assert "tok-secret-1" not in failed.last_error
    (attempt,) = RetryAttempt.objects.filter(failed_integration=failed)
    assert attempt.outcome == "refused" and "tok-secret-1" not in attempt.error


def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch, receiver):
    """DNS rebinding: a name that resolved to a public address when it was checked cannot
    lead the connection elsewhere, as the connection is made to the checked address itself."""
    port = receiver.server.server_address[1]
    answers = iter(
        [
            [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))],
            [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))],
        ]
    )
    monkeypatch.setattr(endpoints.socket, "getaddrinfo", lambda *a, **k: next(answers))
    connected = []
    monkeypatch.setattr(
        endpoints.socket.socket, "connect", lambda self, address: connected.append(address)
    )

    with override_settings(ALLOWED_ENDPOINT_NETWORKS=[]):
        endpoints.checked_connection(("rebinding.example", port), timeout=1).close()

    assert connected == [("93.184.215.14", port)]


def test_an_endpoint_stored_before_the_rules_is_refused_without_echoing_it(channel, product_type):
    Channel.objects.filter(pk=channel.pk).update(
        retry_endpoint="ftp://svc:ftp-pass-123@files.example.com/x"
    )
    channel.refresh_from_db()
    failed = report(channel, product_type, retry_interval=600)
    make_due(failed)

    run_worker()

    failed.refresh_from_db()
    assert "Only http and https URLs are allowed." in failed.last_error
    assert "ftp-pass-123" not in failed.last_error and "svc" not in failed.last_error


def test_an_answer_is_kept_as_a_short_printable_excerpt(channel, product_type, receiver):
    receiver.status = 500
    receiver.body = b"Traceback\r\n\x1b[31m" + b"x" * 5000 + b"\ndb_password=hunter2"
    channel.retry_endpoint = receiver.url
    channel.save()
    failed = report(channel, product_type, retry_interval=600)
    make_due(failed)

    run_worker()

    failed.refresh_from_db()
    assert failed.last_error.startswith("HTTP 500: Traceback")
    assert len(failed.last_error) <= len("HTTP 500: ") + endpoints.EXCERPT_LIMIT
    assert failed.last_error.isprintable()
    assert "hunter2" not in failed.last_error
    assert FailedIntegration.objects.get(pk=failed.pk).retry_count == 2
