"""The Pixels page: segmentation and detection of an uploaded photo by torchvision's ResNet-backed models."""
