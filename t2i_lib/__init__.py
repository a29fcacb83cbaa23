"""t2i_lib: the small PyTorch library that every chapter of the t2i-book trains through.

Modules, by concern:

- ``profiles``   run profiles (quick / colab), device and precision choice, seeding, the chapter banner
- ``recipes``    each chapter's training numbers, for both profiles, in one readable place
- ``train``      the training loop (knows nothing about the model it trains)
- ``checkpoint`` atomic save, exact resume, safe load
- ``download``   the one way anything is fetched
- ``data``       Shapes, Digits, MNIST, CIFAR-10, COCO Captions
- ``models``     the models the chapters build
- ``plots`` / ``widgets``  figures and interactive demos (with static fallbacks for the rendered book)
"""

__version__ = "0.1.0"
