"""`python -m resnet_core …`: see `python -m resnet_core --help`."""
from .cli import main

raise SystemExit(main())
