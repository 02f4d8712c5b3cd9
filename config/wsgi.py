import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

# The web server's statements wait at most DB_ANSWER_TIMEOUT for each answer of PostgreSQL, the
# request's signals and its response's close included (common/postgresql/base.py).
from django.conf import settings  # noqa: E402

from common.postgresql.base import answer_within_by_default  # noqa: E402

answer_within_by_default(settings.DB_ANSWER_TIMEOUT)
