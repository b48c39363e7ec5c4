"""How fast this server trains, and so how long work takes here.

    python -m resnet_core calibrate            # measure once (~20 s); finished runs refine it after
    python -m resnet_core presets --json       # each preset's length for this server, and its wall time

`book` keeps the measured speeds in the data folder (per machine, net, device, precision and threads); `probe` and
`calibrate` measure them; `meter` measures every run as it trains, and the executor adds what it measured to the
book; `estimate` turns speeds into wall times; `fit` picks each preset's length for a time budget.
"""
