"""Django's PostgreSQL backend, with a deadline on the database's answers (see `base`)."""
