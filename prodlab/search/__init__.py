"""Product image search (notebook 06, article §2.4 item 3): find the catalogue products that look like a query image.

The article lists "search and categorisation of products" among the uses of image models without saying how.
Search by image is nearest-neighbour retrieval in an **embedding**: a function that maps a product image (float
C x H x W, the catalogue's spec; 1 x 28 x 28 for Fashion-MNIST) to a vector, so that similar products get vectors
pointing the same way. A catalogue is a data set by name (``prodlab.datasets``; default Fashion-MNIST): its training
images are the products searched. The package is cut by step:

- :mod:`~prodlab.search.embed`: the five embeddings (pixels, PCA, VAE, GAN discriminator, classifier) and which
  of them each data set can use;
- :mod:`~prodlab.search.index`: the exact index (one matrix product) and the cached catalogue indexes;
- :mod:`~prodlab.search.approx`: the approximate index on FAISS (IVF), for millions of products;
- :mod:`~prodlab.search.photo`: a shopper's photo as a query of the catalogue's spec, and :func:`search_photo`;
- :mod:`~prodlab.search.by_text`: a shopper's words as the query, by the text-image model (:func:`search_text`);
- :mod:`~prodlab.search.evaluate`: precision@k, AP@k, mAP, MRR, NDCG and the benchmark of the embeddings;
- :mod:`~prodlab.search.explore`: best and worst queries, edited and generated queries, the t-SNE map;
- :mod:`~prodlab.search.bench` and :mod:`~prodlab.search.sizing`: exact against approximate search at
  60,000 to 10,000,000 items, and what 100 million products would need (``python -m prodlab bench search``).

Everything notebooks and figures use is importable from ``prodlab.search`` itself.
"""

from prodlab import data
from prodlab.search import bench, sizing
from prodlab.search.approx import ApproxIndex, recall_at_k
from prodlab.search.by_text import search_text
from prodlab.search.embed import (
    BEST,
    EMBEDDINGS,
    PCA_DIM,
    PREFERENCE,
    Embedder,
    EmbeddingSpec,
    SearchError,
    as_batch,
    available,
    best_available,
    catalogue,
    data_key,
    embedder,
    embedding_key,
    embedding_spec,
    fit_pca,
    unavailable,
)
from prodlab.search.evaluate import (
    K_EVAL,
    average_precision_at_k,
    benchmark,
    evaluate_embedding,
    format_table,
    mean_precision,
    ndcg_at_k,
    precision_at_k,
    query_set,
    reciprocal_rank,
    relevance,
    single_query_ms,
)
from prodlab.search.explore import (
    EDITS,
    brighten,
    by_precision,
    catalogue_map,
    good_and_failed,
    recovery,
    shift,
    variant_queries,
)
from prodlab.search.index import (
    KINDS,
    Index,
    SearchIndex,
    build_index,
    cache_path,
    catalogue_index,
    load_index,
    query,
    sharded_search,
    tune_queries,
)
from prodlab.search.photo import found_images, photo_image, search_photo

__all__ = [
    "BEST", "EDITS", "EMBEDDINGS", "K_EVAL", "KINDS", "PCA_DIM", "PREFERENCE", "ApproxIndex", "as_batch", "available",
    "average_precision_at_k", "bench", "benchmark", "best_available", "brighten", "build_index", "by_precision",
    "cache_path", "catalogue", "catalogue_index", "catalogue_map", "data", "data_key", "Embedder", "embedder",
    "embedding_key", "embedding_spec", "EmbeddingSpec", "evaluate_embedding", "fit_pca", "format_table",
    "found_images", "good_and_failed", "Index", "load_index", "mean_precision", "ndcg_at_k", "photo_image",
    "precision_at_k", "query", "query_set", "recall_at_k", "reciprocal_rank", "recovery", "relevance", "search_photo",
    "search_text", "SearchError", "SearchIndex", "sharded_search", "shift", "single_query_ms", "sizing",
    "tune_queries",
    "unavailable", "variant_queries",
]
