from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("proof/", views.proof, name="trust_proof"),
]
