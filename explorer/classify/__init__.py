"""The Classify page: images to classify, and each network's answer with its attribution."""
