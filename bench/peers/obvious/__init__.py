"""The obvious DRF implementation of the same contract, as a user would write it untuned.

It serves the service's own tables (the `integrations` models) with DRF's stock parts: a
ModelViewSet, a ModelSerializer, PageNumberPagination, django-filter and DRF's authtoken. The
same code serves a schema of its own (bench/peers/obvious_own) when OBVIOUS_MODELS names that app.
"""
