from django.apps import AppConfig


class HeliosSiteConfig(AppConfig):
    name = "helios_site"
    verbose_name = "HELIOS site"
