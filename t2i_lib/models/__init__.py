"""The models the chapters build, one idea per file.

Every trainable model follows one contract, so that :func:`t2i_lib.train.trainer.train` needs to know nothing
about it: it is an ``nn.Module`` with ``loss(batch) -> (loss, metrics)``, where ``batch`` is whatever
the DataLoader yields (already on the device), ``loss`` a scalar tensor and ``metrics`` a dict of
floats or 0-d tensors to log.

The image tokenizers (``VQVAE``, ``ResNetVQVAE``, ``DVAE``, ``OpenAIDVAE``) share a second contract,
:class:`~t2i_lib.models.tokenizer.ImageTokenizer`: ``encode(images) -> LongTensor (B, h, w)``,
``decode(tokens) -> images in [0, 1]``, ``num_codes``, ``grid_size(image_size) -> (h, w)``.

- ``config``: ``resolve_config``, the one way every model takes a config and keyword overrides (Chapter 1)
- ``checks``: geometry checks, and the one image and token validation (``check_images``, ``check_tokens``) (Chapter 1)
- ``tokenizer``: the image-tokenizer interface (``ImageTokenizer``) the VQ-VAEs and dVAEs share (Chapter 4)
- ``blocks``: the residual conv trunk the VQ-VAE and the dVAE share, and PSNR (Chapter 4)
- ``autoencoder``: PCA as a linear autoencoder, the report's convolutional autoencoder (Chapter 1)
- ``ppca``: probabilistic PCA, where the ELBO and log p(x) are exact (Chapter 2)
- ``vae``: the report's convolutional VAE, its ResNet-50 VAE, a spatial VAE, collapse diagnostics (Chapter 2)
- ``vae_sf``: the same VAE trained with the score-function estimator instead of the pathwise one (Chapter 3)
- ``quantize``: the vector quantiser with its codebook fixes as switches, and named flavours of them (Chapter 4)
- ``vqvae``: the residual VQ-VAE (DeepMind's Sonnet configuration) and the report's ResNet-101 VQ-VAE (Chapter 4)
- ``pixelcnn``: a gated PixelCNN, the learned prior over code maps (Chapter 4)
- ``dvae``: a Gumbel-softmax discrete VAE with DALL-E's temperature and KL schedules (Chapter 5)
- ``openai_dvae``: OpenAI's released DALL-E dVAE, re-implemented and loaded without unpickling code (Chapter 5)
"""

from t2i_lib.data.batches import stack_dataset
from t2i_lib.models.autoencoder import (AEConfig, ConvAutoencoder, LinearAutoencoder, PCAResult,
                                        encode_latents, pca, pca_subspace_angles)
from t2i_lib.models.dvae import DVAE, DVAEConfig
from t2i_lib.models.openai_dvae import OpenAIDVAE, OpenAIDVAEConfig
from t2i_lib.models.pixelcnn import GatedPixelCNN, PixelCNNConfig
from t2i_lib.models.ppca import PPCA, gaussian_kl
from t2i_lib.models.quantize import QUANTIZER_FLAVOURS, QuantizerConfig, VectorQuantizer, quantizer_flavour
from t2i_lib.models.tokenizer import ImageTokenizer
from t2i_lib.models.vae import (ConvVAE, ResNetVAE, ResNetVAEConfig, SpatialVAE, SpatialVAEConfig, VAEConfig,
                                active_units)
from t2i_lib.models.vqvae import VQVAE, ResNetVQVAE, ResNetVQVAEConfig, VQVAEConfig

__all__ = ["ImageTokenizer", "DVAE", "DVAEConfig", "OpenAIDVAE", "OpenAIDVAEConfig", "GatedPixelCNN", "PixelCNNConfig", "VQVAE", "ResNetVQVAE", "ResNetVQVAEConfig", "VQVAEConfig",
           "PPCA", "gaussian_kl", "QuantizerConfig", "VectorQuantizer", "QUANTIZER_FLAVOURS", "quantizer_flavour", "ConvVAE", "ResNetVAE",
           "ResNetVAEConfig", "SpatialVAE", "SpatialVAEConfig", "VAEConfig", "active_units",
           "AEConfig", "ConvAutoencoder", "LinearAutoencoder", "PCAResult", "encode_latents", "pca",
           "pca_subspace_angles", "stack_dataset"]
