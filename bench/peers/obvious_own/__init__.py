"""The obvious DRF implementation on a schema of its own, as a team would write it.

The same code as `bench/peers/obvious` (its settings, urls and views, with OBVIOUS_MODELS naming
this app), over its own `FailedIntegration` model with the contract's fields and its own migration,
with the indexes such a team would add: Django's on every foreign key, the contract's on
`version_date`, one on (channel, version_date) and one on the object a failure is of
(content_type, object_id). No triggers and no kept counts. Its tokens are DRF's authtoken.
"""
