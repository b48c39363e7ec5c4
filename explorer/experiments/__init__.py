"""The Experiments page: lesion studies, loss landscapes and shattered gradients, plain against residual."""
