from django.contrib.admin.apps import AdminConfig


class EdcAdminConfig(AdminConfig):
    """django.contrib.admin with the site that checks posted object ids (edc.ids)."""

    default_site = "edc.ids.IdCheckingAdminSite"
