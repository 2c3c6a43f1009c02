"""Training, cut by model family: ``classifier`` and ``contrastive`` (the two rulers of chapter 04: supervised, and
SimCLR without labels), ``vae`` and ``vae_measure`` (chapter 03), ``gan`` and ``gan_measure`` (chapter 02), and
``registry``: the named recipes behind ``python -m prodlab train NAME``.

Each family module has one step function that is the article's algorithm for one batch (``gan_step``: §3.1.2
steps 2-6; ``vae_step``: §3.2.2 steps 2-7; ``classifier_step``), and a loop that calls it.
"""
