"""Product image search (notebook 06, article §2.4 item 3): find the catalogue products that look like a query image.

The article lists "search and categorisation of products" among the uses of image models without saying how.
Search by image is nearest-neighbour retrieval in an **embedding**: a function that maps a 28 x 28 product to a
vector, so that similar products get vectors pointing the same way. The package is cut by step:

- :mod:`~prodlab.search.embed`: the five embeddings (pixels, PCA, VAE, GAN discriminator, classifier);
- :mod:`~prodlab.search.index`: the exact index (one matrix product) and the cached catalogue indexes;
- :mod:`~prodlab.search.approx`: the approximate index on FAISS (IVF), for millions of products;
- :mod:`~prodlab.search.evaluate`: precision@k, AP@k, mAP and the benchmark of the embeddings;
- :mod:`~prodlab.search.explore`: best and worst queries, edited and generated queries, the t-SNE map;
- :mod:`~prodlab.search.bench` and :mod:`~prodlab.search.sizing`: exact against approximate search at
  60,000 to 10,000,000 items, and what 100 million products would need (``python -m prodlab bench search``);
- :mod:`~prodlab.search.cli`: the command-line options the CLI adds.

Everything notebooks and figures use is importable from ``prodlab.search`` itself.
"""

from prodlab import data
from prodlab.search import bench, cli, sizing
from prodlab.search.approx import ApproxIndex, recall_at_k
from prodlab.search.embed import (
    BEST,
    EMBEDDINGS,
    PCA_DIM,
    Embedder,
    EmbeddingSpec,
    SearchError,
    as_batch,
    available,
    catalogue,
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
    precision_at_k,
    query_set,
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
)

__all__ = [
    "BEST", "EDITS", "EMBEDDINGS", "K_EVAL", "KINDS", "PCA_DIM", "ApproxIndex", "as_batch", "available",
    "average_precision_at_k", "bench", "benchmark", "brighten", "build_index", "by_precision", "cache_path",
    "catalogue", "catalogue_index", "catalogue_map", "cli", "data", "Embedder", "embedder", "embedding_key",
    "embedding_spec", "EmbeddingSpec", "evaluate_embedding", "fit_pca", "format_table", "good_and_failed", "Index",
    "load_index", "mean_precision", "precision_at_k", "query", "query_set", "recall_at_k", "recovery", "relevance",
    "SearchError", "SearchIndex", "shift", "single_query_ms", "sizing", "unavailable", "variant_queries",
]
