from django.apps import AppConfig


class ThreadsAppConfig(AppConfig):
    name = "threads_app"
    verbose_name = "Threads Console"

    def ready(self) -> None:
        from threads_app import signals, tasks

        signals.connect()
        tasks.register()
