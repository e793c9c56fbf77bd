"""Export pages."""

urlpatterns: list = []
