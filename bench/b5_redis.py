"""placeholder"""

NAME = "redis"
TITLE = "b5_redis"


def run(settings, load):
    from .harness import Skip

    raise Skip("not written yet")
