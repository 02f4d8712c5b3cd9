"""A stateful property test: random sequences of reports, updates, operator actions and
deletes through the API, checked after every step against a model of what each record should
be (its fields, whether it is active, its state)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from integrations.models import Channel

pytestmark = pytest.mark.django_db

BASE = dt.datetime(2025, 6, 27, tzinfo=dt.UTC)


@dataclass
class Expected:
    object_id: int
    version: int  # hours after BASE
    retry_count: int
    max_retry_count: int
    log_id: int | None = None
    is_active: bool = True
    resolution: str = ""
    parked: bool = False

    @property
    def state(self) -> str:
        """The state of a record of a channel without a retry endpoint (so never due)."""
        if not self.is_active:
            return "superseded" if self.resolution == "superseded" else "resolved"
        if self.parked:
            return "parked"
        return "exhausted" if self.retry_count >= self.max_retry_count else "pending"


def life_cycle_machine(client, content_type_id: int) -> type[RuleBasedStateMachine]:
    class LifeCycle(RuleBasedStateMachine):
        records = Bundle("records")

        def __init__(self):
            super().__init__()
            self.channel = Channel.objects.create(name="Machine")  # each run its own
            self.base = f"/api/v1/channel/{self.channel.pk}/failed_integrations/"
            self.expected: dict[int, Expected] = {}

        def supersede(self, object_id: int) -> None:
            """The newest version of the object stays active (the latest report among equal
            versions); the object's other active records are superseded."""
            active = [
                (e.version, pk)
                for pk, e in self.expected.items()
                if e.object_id == object_id and e.is_active
            ]
            for _, pk in sorted(active)[:-1]:
                self.expected[pk].is_active, self.expected[pk].resolution = False, "superseded"

        @rule(
            target=records,
            object_id=st.integers(1, 3),
            version=st.integers(0, 3),
            retry_count=st.integers(0, 3),
            max_retry_count=st.integers(1, 4),
        )
        def report(self, object_id, version, retry_count, max_retry_count):
            body = {
                "version_date": (BASE + dt.timedelta(hours=version)).isoformat(),
                "reason_type": "remote",
                "content_type": content_type_id,
                "object_id": object_id,
                "retry_count": retry_count,
                "max_retry_count": max_retry_count,
            }
            answer = client.post(self.base, body, format="json")
            assert answer.status_code == 201, answer.content
            pk = answer.json()["pk"]
            self.expected[pk] = Expected(object_id, version, retry_count, max_retry_count)
            self.supersede(object_id)
            return pk

        @rule(
            pk=records,
            log_id=st.none() | st.integers(0, 9),
            max_retry_count=st.none() | st.integers(1, 4),
        )
        def patch(self, pk, log_id, max_retry_count):
            if pk not in self.expected:
                assert client.patch(f"{self.base}{pk}/", {}, format="json").status_code == 404
                return
            body = {"log_id": log_id}
            if max_retry_count is not None:
                body["max_retry_count"] = max_retry_count
                self.expected[pk].max_retry_count = max_retry_count
            answer = client.patch(f"{self.base}{pk}/", body, format="json")
            assert answer.status_code == 200, answer.content
            self.expected[pk].log_id = log_id

        @rule(pk=records, active=st.booleans())
        def set_active(self, pk, active):
            """A channel app or a person resolves the record, or makes it active again (which
            may supersede, or be superseded by, another of its object)."""
            answer = client.patch(f"{self.base}{pk}/", {"is_active": active}, format="json")
            record = self.expected.get(pk)
            if record is None:
                assert answer.status_code == 404, answer.content
                return
            assert answer.status_code == 200, answer.content
            if active and not record.is_active:
                record.is_active, record.resolution = True, ""
                self.supersede(record.object_id)
            elif not active and record.is_active:
                record.is_active, record.resolution = False, "resolved"

        @rule(pk=records, action=st.sampled_from(["park", "unpark", "retry"]))
        def act(self, pk, action):
            answer = client.post(f"{self.base}{pk}/{action}/", {}, format="json")
            record = self.expected.get(pk)
            if record is None:
                assert answer.status_code == 404, answer.content
                return
            if not record.is_active and action in ("park", "retry"):
                assert answer.status_code == 409, answer.content
                return
            assert answer.status_code == 200, answer.content
            if record.is_active:  # unpark leaves an inactive record as it is
                record.parked = action == "park"

        @rule(pk=consumes(records))
        def delete(self, pk):
            answer = client.delete(f"{self.base}{pk}/")
            assert answer.status_code == (204 if pk in self.expected else 404)
            self.expected.pop(pk, None)

        @invariant()
        def records_are_as_expected(self):
            page = client.get(self.base, {"limit": 1000}).json()
            stored = {
                r["pk"]: (
                    r["object_id"],
                    r["retry_count"],
                    r["max_retry_count"],
                    r["log_id"],
                    r["is_active"],
                    r["state"],
                )
                for r in page["results"]
            }
            expected = {
                pk: (e.object_id, e.retry_count, e.max_retry_count, e.log_id, e.is_active, e.state)
                for pk, e in self.expected.items()
            }
            assert stored == expected
            assert page["count"] == len(expected)

    return LifeCycle


def test_the_api_keeps_every_record_as_a_model_of_it_says(api_client, product_type):
    machine = life_cycle_machine(api_client, product_type.pk)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
