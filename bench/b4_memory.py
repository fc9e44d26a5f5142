"""placeholder"""

NAME = "memory"
TITLE = "b4_memory"


def run(settings, load):
    from .harness import Skip

    raise Skip("not written yet")
