"""Search at scale: the FAISS index (round trip, recall, errors), --index, the bench in a tiny mode, the 100M note."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from prodlab import search
from prodlab.cli import build_parser, main
from prodlab.cli.bench import format_bench
from prodlab.search import approx, bench, sizing
from prodlab.search.approx import ApproxIndex


def _clustered(n: int, dim: int = 32, centres: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Points around ``centres`` random directions (like products around their kinds), and the centre of each."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(centres, dim, generator=g)
    labels = torch.randint(0, centres, (n,), generator=g)
    return means[labels] + 0.5 * torch.randn(n, dim, generator=g), labels


@pytest.fixture(scope="module")
def tuned() -> tuple[ApproxIndex, search.Index]:
    vectors, labels = _clustered(4000)
    exact = search.Index.build("test", "k" * 64, vectors, labels)
    index = ApproxIndex.build("test", "k" * 64, vectors, labels, "IVF64,Flat")
    queries = _clustered(200, seed=1)[0]
    index.tune(queries, exact.search(queries, 10)[1])
    return index, exact


def test_tuned_approx_index_finds_the_exact_neighbours_of_new_queries(tuned):
    index, exact = tuned
    queries = _clustered(300, seed=2)[0]  # not the tuning queries
    scores, ids = index.search(queries, 10)
    exact_scores, exact_ids = exact.search(queries, 10)
    assert approx.recall_at_k(ids, exact_ids) >= 0.9
    assert index.probe < 64  # it is approximate: not every cell is visited
    assert (scores[:, :-1] >= scores[:, 1:] - 1e-6).all()  # best first, cosine like the exact index
    cosine = (torch.nn.functional.normalize(queries, dim=1)[:, None, :] * exact.vectors[ids]).sum(-1)
    assert torch.allclose(scores, cosine, atol=1e-5) and (scores <= exact_scores[:, :1] + 1e-6).all()


def test_recall_at_k_by_hand():
    exact = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert approx.recall_at_k(torch.tensor([[4, 3, 2, 1], [5, 9, 10, 11]]), exact) == pytest.approx(5 / 8)


def test_approx_index_round_trip_is_safetensors_with_the_documented_header(tuned, tmp_path):
    index, _ = tuned
    path = index.save(tmp_path / "approx.safetensors")
    with safe_open(str(path), framework="pt") as f:  # plain safetensors: a JSON header and raw tensors
        meta, names = f.metadata(), set(f.keys())
        assert f.get_tensor("faiss").dtype == torch.uint8 and f.get_tensor("labels").dtype == torch.int64
    assert names == {"faiss", "labels"}
    assert {k: meta[k] for k in ("kind", "engine", "factory", "dim", "metric", "nlist", "n", "format")} == {
        "kind": "approx", "engine": "faiss", "factory": "IVF64,Flat", "dim": "32", "metric": "inner_product",
        "nlist": "64", "n": "4000", "format": str(approx.FORMAT)}
    assert int(meta["nprobe"]) == index.probe and meta["m"] == "0"
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert json.loads(path.read_bytes()[8 : 8 + header_len])["__metadata__"] == meta
    back = search.load_index(path)
    assert isinstance(back, ApproxIndex) and back.probe == index.probe and torch.equal(back.labels, index.labels)
    queries = _clustered(50, seed=3)[0]
    assert torch.equal(back.search(queries, 5)[1], index.search(queries, 5)[1])
    with pytest.raises(search.SearchError, match="approx index, not an exact one"):
        search.Index.load(path)


def test_add_continues_the_ids():
    vectors, labels = _clustered(1000)
    index = ApproxIndex.build("t", "k", vectors[:600], labels[:600], "IVF8,Flat")
    index.add(vectors[600:], labels[600:])
    exact = search.Index.build("t", "k", vectors[:600], labels[:600])
    exact.add(vectors[600:], labels[600:])
    index.set_probe(8)  # every cell: exact
    assert len(index) == len(exact) == 1000 and torch.equal(index.labels, exact.labels)
    assert index.search(vectors[[700, 999]], 1)[1].flatten().tolist() == [700, 999]
    assert exact.search(vectors[[700, 999]], 1)[1].flatten().tolist() == [700, 999]


def test_bad_index_files_are_one_clear_search_error(tuned, tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not safetensors at all")
    with pytest.raises(search.SearchError, match="cannot read the search index"):
        search.load_index(garbage)
    index, _ = tuned
    damaged = tmp_path / "damaged.safetensors"
    save_file({"faiss": torch.zeros(64, dtype=torch.uint8), "labels": index.labels}, str(damaged), index.header())
    with pytest.raises(search.SearchError, match="cannot read the search index .*damaged"):
        search.load_index(damaged)
    future = tmp_path / "future.safetensors"
    save_file({"faiss": torch.zeros(1, dtype=torch.uint8), "labels": index.labels}, str(future),
              {**index.header(), "format": "99"})
    with pytest.raises(search.SearchError, match="not an approximate index of format"):
        search.load_index(future)


def test_index_argument_parses_exact_and_approx_only(capsys):
    parser = build_parser()
    assert parser.parse_args(["search", "x.png"]).index == "exact"
    assert parser.parse_args(["search", "x.png", "--index", "approx"]).index == "approx"
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["search", "x.png", "--index", "fast"])
    assert exit_info.value.code == 2 and "invalid choice: 'fast'" in capsys.readouterr().err
    with pytest.raises(search.SearchError, match="unknown index kind 'fast'"):
        search.catalogue_index("pixels", kind="fast")


def test_bench_search_refuses_a_bad_size(capsys):
    args = build_parser().parse_args(["bench", "search", "--sizes", "60000", "--sizes", "12", "--json"])
    assert args.sizes == [60000, 12] and args.json and args.threads == 1
    assert main(["bench", "search", "--sizes", "60000", "--sizes", "12"]) == 1
    assert capsys.readouterr().err.startswith("error: --sizes must be between 1,000 and 100,000,000, not 12")


def test_approx_catalogue_index_is_cached_and_finds_the_item_itself():
    emb, index = search.catalogue_index("pixels", kind="approx")
    assert isinstance(index, ApproxIndex) and len(index) == 60_000
    assert search.cache_path("pixels", emb.key, "approx").is_file()
    images = search.catalogue()[0]
    assert search.query(emb, index, images[[5, 4321]], k=3)[1][:, 0].tolist() == [5, 4321]
    again = search.catalogue_index("pixels", kind="approx")[1]
    assert again.probe == index.probe and again.factory == index.factory


def test_stand_in_growth_is_deterministic_and_keeps_the_real_items_first():
    images = search.catalogue()[0][:70]
    a = bench.augmented(images, torch.Generator().manual_seed(1))
    b = bench.augmented(images, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (70, *search.data.spec().shape) and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, search.as_batch(images))
    base, labels = torch.nn.functional.normalize(torch.randn(10, 8), dim=1), torch.arange(10)
    vectors, grown_labels = bench.grown(base, labels, 25)
    assert torch.equal(vectors[:10], base) and grown_labels.tolist() == list(range(10)) * 2 + list(range(5))
    jitter = (vectors[10:] - base[grown_labels[10:]]).norm(dim=1).mean()  # about sigma x sqrt(8) per copy
    assert float(jitter) == pytest.approx(bench.JITTER_SIGMA * 8**0.5, rel=0.4)


def test_bench_in_a_tiny_mode_returns_every_figure_and_the_note(tmp_path):
    result = bench.bench_search([2000], n_queries=40, n_single=5, compare=False, name="pixels")
    assert {"stand_in", "threads", "load_average_before", "results", "augmented_items"} <= set(result)
    r = result["results"][0]
    assert r["n"] == 2000 and r["source"] == "real" and r["compared"] == []
    for m in (r["exact"], r["approx"]):
        assert {"single_ms", "batched_ms_per_query", "build_s", "bytes_per_item"} <= set(m)
        assert 0 < m["single_ms"]["p50"] <= m["single_ms"]["p99"]
    assert r["approx"]["recall_at_10"] >= approx.TARGET_RECALL and r["approx"]["factory"] == "IVF32,Flat"
    assert r["exact"]["bytes_per_item"] == search.data.spec().num_pixels * 4 + 8  # float32 pixels, an int64 label
    assert result["dataset"] == search.data.DEFAULT
    note = sizing.write_note(result, tmp_path / "note.md").read_text()
    assert "100 million" in note and "IVF32,Flat" in note and result["stand_in"] in note


def test_sizing_of_100_million_from_measured_costs():
    m = {"factory": "IVF1024,Flat", "bytes_per_item": 1000.0, "single_ms": {"p50": 2.0, "p99": 3.0},
         "recall_at_10": 0.96}
    p = sizing.plan(m, shard=1_000_000, items=100_000_000)
    assert p["shards"] == 100 and p["core_ms_per_query"] == 200.0 and p["queries_per_second_per_core"] == 5.0
    assert p["memory_gib"] == round(1e11 / 2**30, 1) and p["machines_of_64_gib"] == 2 and p["cores_for_100_qps"] == 20


def test_bench_search_writes_the_json_it_prints(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "search", "--sizes", "2000", "--no-compare", "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed and printed["embedding"] == search.BEST
    assert [r["n"] for r in printed["results"]] == [2000] and "IVF" in format_bench(printed)
