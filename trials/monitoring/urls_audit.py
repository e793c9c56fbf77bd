"""URLs of the monitoring audit pages."""

urlpatterns: list = []
