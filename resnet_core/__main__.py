"""`python -m resnet_core …`: see `python -m resnet_core --help`."""
from .cli import main
from .shutdown import exit_now

exit_now(main())
