from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

app_name = "console"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("audit/", views.audit_log, name="audit"),
    path("channels/<int:channel_id>/failures/", views.failures, name="failures"),
    path("channels/<int:channel_id>/failures/act/", views.act, name="act"),
    path("channels/<int:channel_id>/failures/export/", views.export_failures, name="export"),
    path("channels/<int:channel_id>/failures/<int:pk>/", views.failure, name="failure"),
    path("channels/<int:channel_id>/operations/<int:pk>/", views.operation, name="operation"),
    path("channels/<int:channel_id>/settings/", views.settings_page, name="settings"),
    path("channels/<int:channel_id>/dispatch/", views.dispatch_action, name="dispatch"),
]
