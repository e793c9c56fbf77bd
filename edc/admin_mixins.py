"""Admin building blocks shared by the apps (the lowest layer: no app imports here)."""

from django.http import HttpRequest


class ReadOnlyAdminMixin:
    """An admin that shows records and never adds, changes or deletes them (their writes go through
    the services, audited with a reason). Django drops the "delete selected" action by itself when
    the delete permission is refused. Put it first among the bases so it wins over ModelAdmin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False
