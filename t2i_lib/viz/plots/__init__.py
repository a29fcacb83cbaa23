"""Figures, one module a topic.

- ``base``: image grids, reconstructions, the figure helpers every plot uses (Chapter 1)
- ``latent``: latent scatter plots, the decoded manifold, interpolation (Chapter 1)
- ``vae``: the bound's slices on probabilistic PCA, KL per latent dimension (Chapter 2)
- ``vq``: quantisation in 2-D, codebook curves, FID against N, scored samples (Chapter 4)
- ``tokens``: dVAE training curves, token statistics, token maps (Chapter 5)
"""

from t2i_lib.viz.plots.base import image_grid, show_images, show_reconstructions, to_numpy_images
from t2i_lib.viz.plots.latent import (decode_numpy, interpolate_latents, latent_grid_points, latent_range,
                                      plot_latent_manifold, plot_latent_scatter, show_interpolation)
from t2i_lib.viz.plots.tokens import plot_dvae_training, plot_token_maps, plot_token_statistics
from t2i_lib.viz.plots.vae import plot_bound_slices, plot_kl_per_dim
from t2i_lib.viz.plots.vq import (plot_codebook_curves, plot_fid_vs_n, plot_quantization_2d,
                                  show_scored_samples)

__all__ = ["decode_numpy", "image_grid", "interpolate_latents", "latent_grid_points", "latent_range",
           "plot_bound_slices", "plot_codebook_curves", "plot_dvae_training", "plot_fid_vs_n", "plot_kl_per_dim",
           "plot_latent_manifold", "plot_latent_scatter", "plot_quantization_2d", "plot_token_maps",
           "plot_token_statistics", "show_images", "show_interpolation", "show_reconstructions",
           "show_scored_samples", "to_numpy_images"]
