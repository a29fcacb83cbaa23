"""t2i_lib: the small PyTorch library that every chapter of the t2i-book trains through.

The top level lists concerns; a chapter's pieces are found by its name inside each. Every package's
``__init__`` docstring is the index of its folder: one line a module, and the chapter that teaches it.

- ``env``          every environment variable the library reads, parsed in one place
- ``storage/``     atomic writes, checkpoints (exact resume, safe load), downloads, restricted unpickling
- ``profiles``     run profiles (quick / colab), device and precision, seeding, the chapter banner
- ``data/``        Digits, MNIST, CIFAR-10, COCO Captions, the Shapes world (``data/shapes/``), token caches
- ``train/``       the trainer (knows nothing about any model), lr schedules, distributed training
- ``models/``      the models the chapters build, one a file, plus shared blocks and input checks
- ``recipes/``     each chapter's training numbers for both profiles, one file a chapter
- ``metrics/``     FID and its Inception network, PSNR, codebook usage, bits per dimension
- ``experiments/`` what a chapter measures that is not a model: bounds, estimators, priors, token statistics
- ``viz/``         figures (``viz/plots/``) and interactive widgets with static fallbacks (``viz/widgets/``)

Imports run one way, down :data:`LAYERS`: a module imports only from its own concern or from a concern in
an earlier layer, never from a later one or a neighbour in its own layer, and no private name (``_x``)
crosses a module boundary. ``tests/test_project.py`` checks this from the source.

The model contract (Chapter 1): a trainable model is an ``nn.Module`` with ``loss(batch) -> (loss,
metrics)``; :func:`t2i_lib.train.trainer.train` needs nothing else. The image-tokenizer contract (Chapters 4-5,
:class:`t2i_lib.models.tokenizer.ImageTokenizer`, met by ``VQVAE``, ``ResNetVQVAE``, ``DVAE`` and
``OpenAIDVAE``): ``encode(images) -> LongTensor (B, h, w)`` (images (B, C, H, W) float in [0, 1]; tokens
in [0, num_codes)), ``decode(tokens) -> images`` ((B, C, H, W) in [0, 1]), ``num_codes`` (an int, K) and
``grid_size(image_size) -> (h, w)``, always a pair of ints (``image_size`` an int S or a pair (H, W);
the VQ-VAEs and the dVAE default it to the size they were built for). The same things carry the same
names on all four: ``downsample_factor``, ``embedding_dim``, ``image_size``; their inputs are checked by
:mod:`t2i_lib.models.checks` (``check_images``, ``check_tokens``), with the same messages everywhere.
"""

__version__ = "0.1.0"

# The import order of the concerns, first to last (see the module docstring).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("env",),
    ("storage", "profiles"),
    ("data", "train"),
    ("models", "recipes"),
    ("metrics",),
    ("experiments",),
    ("viz",),
)
