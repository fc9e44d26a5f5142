"""placeholder"""

NAME = "arq"
TITLE = "b6_arq"


def run(settings, load):
    from .harness import Skip

    raise Skip("not written yet")
