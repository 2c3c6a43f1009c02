"""One module per chapter (``chNN_topic`` goes with ``notebooks/NN_topic.ipynb``): its figures, registered in the
catalogue, and the plot helpers and cached analyses they draw from. Importing this package registers every figure.
"""

from prodlab.chapters import (  # noqa: F401  (imported for their figures' registration)
    ch00_products,
    ch01_losses,
    ch02_gan,
    ch03_vae,
    ch04_evaluation,
    ch05_editing,
    ch06_search,
    ch08_diffusion,
    ch09_catalogue,
    ch10_text,
)
