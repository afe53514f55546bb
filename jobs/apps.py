from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from jobs import conf, registry

        # Every process learns every task name at start: the gateway refuses unknown tasks at
        # enqueue time, a worker runs them, and a name taken twice stops the start here.
        registry.autodiscover(conf.task_imports())
