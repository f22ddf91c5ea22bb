"""``python -m omniguard_plugins.server`` is ``omniguard serve``."""

from .cli import serve

if __name__ == "__main__":
    serve(prog_name="omniguard serve")
