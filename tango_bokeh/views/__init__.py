"""Views: trends, spectra, images and value/state tables."""
