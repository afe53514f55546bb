from django.apps import AppConfig


class RaftConfig(AppConfig):
    name = "raft"
    verbose_name = "Raft consensus"
