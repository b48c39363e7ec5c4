"""Looking inside trained networks: attributions (Captum), layer responses and gradient norms (`analysis`), images
in and out (`images`), and ready-to-use classifiers (`classifier`)."""
