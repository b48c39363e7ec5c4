"""Training a network: the recipe, the datasets and their augmentation, the training loop, evaluation,
checkpoints, the device and precision, and the memory a run needs."""
