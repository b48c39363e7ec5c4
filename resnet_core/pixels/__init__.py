"""A residual backbone classifies pixels (issue 25): scenes composed of CIFAR images (`scenes`), an FCN head on a
CIFAR net of the paper (`segmenter`), pixel accuracy and IoU (`scores`), its training loop (`segment_train`), and
torchvision's segmentation nets for comparison (`torchvision_models`)."""
