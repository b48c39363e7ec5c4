"""`python -m resnet_core …` and the `resnet-explorer` command: see `python -m resnet_core --help`."""
from .cli import main
from .shutdown import exit_now


def run() -> None:
    """Run the command line and end the process with its status (exit_now: no slow teardown with torch loaded)."""
    exit_now(main())


if __name__ == "__main__":
    run()
