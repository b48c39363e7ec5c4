"""The Train and Runs pages: presets, live runs and their curves, the history of every run."""
