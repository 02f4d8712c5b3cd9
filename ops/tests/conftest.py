from integrations.tests.conftest import receiver  # noqa: F401 (a fixture of these tests too)
