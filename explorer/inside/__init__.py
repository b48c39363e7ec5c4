"""The Inside page: layer responses (Fig. 7), gradients through depth, a model's test report."""
