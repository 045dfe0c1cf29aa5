"""Pipeline components against the real framework packages (LangChain, LlamaIndex, Haystack, rerankers), each in
that framework's own pipeline, with a tiny random model in this process and through a real `headrank serve` on
loopback: the order and scores equal HeadRanker.rank's with the same settings, ids and metadata are kept,
per-call settings are honoured, an empty list is an empty answer, bad settings fail when the component is built."""

import subprocess
import sys

import pytest
from test_serve import HEADS, Server, tiny_dir  # noqa: F401 (tiny_dir: the fixture)

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")
pytest.importorskip("haystack")
pytest.importorskip("rerankers")

QUERY = "query about solar power"
TEXTS = ["solar panels on roofs make power", "pasta recipes from italy", "wind farms at sea", "river music",
         "chess openings for beginners", "solar power plants in deserts"]
IDS = [f"doc-{i}" for i in range(len(TEXTS))]


@pytest.fixture(scope="module")
def local(tiny_dir):
    from headrank.engine.ranker import HeadRanker

    return HeadRanker.from_pretrained(str(tiny_dir), heads=HEADS, device="cpu")


@pytest.fixture(scope="module")
def remote(tiny_dir):
    s = Server(str(tiny_dir), "--heads", HEADS)
    yield s
    s.stop()


def expected(local, fuse=None, valve=None, texts=TEXTS):
    """(index, score) best first, from HeadRanker.rank itself."""
    return [(r.corpus_id, r.score) for r in local.rank(QUERY, texts, fuse_first_stage=fuse, safety_valve=valve)]


def test_settings_fail_when_a_component_is_built(local):
    from headrank.integrations.haystack import HeadRankRanker as HaystackRanker
    from headrank.integrations.langchain import HeadRankCompressor
    from headrank.integrations.llama_index import HeadRankRerank
    from headrank.integrations.rerankers_lib import HeadRankRanker

    for build in (lambda **kw: HeadRankCompressor(reranker=local, **kw), lambda **kw: HeadRankRerank(reranker=local, **kw),
                  lambda **kw: HaystackRanker(model=local, **kw), lambda **kw: HeadRankRanker(local, **kw)):
        for bad in ({"fuse_first_stage": 2.0}, {"fuse_first_stage": -0.1}, {"safety_valve": "yes"}):
            with pytest.raises(ValueError, match="fuse_first_stage|safety_valve"):
                build(**bad)
    with pytest.raises(TypeError, match="preset name or model path"):
        HeadRankCompressor(reranker=42)
    with pytest.raises(ValueError, match="http"):
        HaystackRanker(url="ftp://x")


# ---------------------------------------------------------------------------------------------- LangChain


def _langchain_retriever(texts):
    """An in-memory LangChain retriever: the documents in their stored order (the "first stage"), ids and
    metadata attached."""
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    class InMemory(BaseRetriever):
        docs: list

        def _get_relevant_documents(self, query, *, run_manager=None):
            return list(self.docs)

    return InMemory(docs=[Document(page_content=t, id=i, metadata={"source": f"s{k}", "n": k})
                          for k, (i, t) in enumerate(zip(IDS, texts))])


def test_langchain_compressor_in_a_contextual_compression_retriever(local, remote):
    from langchain_classic.retrievers import ContextualCompressionRetriever

    from headrank.integrations.langchain import HeadRankCompressor

    for reranker in (local, remote.url):
        for fuse in (0, 0.5):
            compressor = HeadRankCompressor(reranker=reranker, top_n=4, fuse_first_stage=fuse, safety_valve=False)
            retriever = ContextualCompressionRetriever(base_compressor=compressor,
                                                       base_retriever=_langchain_retriever(TEXTS))
            docs = retriever.invoke(QUERY)
            want = expected(local, fuse, False)[:4]
            assert [d.id for d in docs] == [IDS[i] for i, _ in want], (reranker, fuse)
            assert [d.metadata["relevance_score"] for d in docs] == pytest.approx([s for _, s in want], abs=1e-5)
            assert all(d.metadata["source"] == f"s{d.metadata['n']}" for d in docs)  # metadata kept
    assert HeadRankCompressor(reranker=local).compress_documents([], QUERY) == []
    everything = HeadRankCompressor(reranker=local, top_n=None, score_key="headrank").compress_documents(
        _langchain_retriever(TEXTS).invoke(QUERY), QUERY)
    assert len(everything) == len(TEXTS) and all("headrank" in d.metadata for d in everything)


# ---------------------------------------------------------------------------------------------- LlamaIndex


def test_llama_index_postprocessor_in_a_query_engine(local, remote, monkeypatch):
    from llama_index.core import SummaryIndex
    from llama_index.core.schema import MetadataMode, TextNode

    from headrank.integrations.llama_index import HeadRankRerank

    monkeypatch.setenv("IS_TESTING", "1")  # LlamaIndex's own switch to its MockLLM: no answer is synthesised
    nodes = [TextNode(text=t, id_=i, metadata={"n": k}) for k, (i, t) in enumerate(zip(IDS, TEXTS))]
    index = SummaryIndex(nodes)  # its retriever returns the nodes in stored order
    for reranker in (local, remote.url):
        for fuse in (0, 0.5):
            post = HeadRankRerank(reranker=reranker, top_n=3, fuse_first_stage=fuse, safety_valve=False,
                                  metadata_mode=MetadataMode.NONE)
            engine = index.as_query_engine(node_postprocessors=[post], response_mode="no_text")
            got = engine.query(QUERY).source_nodes
            want = expected(local, fuse, False)[:3]
            assert [n.node.node_id for n in got] == [IDS[i] for i, _ in want], (reranker, fuse)
            assert [n.score for n in got] == pytest.approx([s for _, s in want], abs=1e-5)
            assert [n.node.metadata["n"] for n in got] == [i for i, _ in want]
    post = HeadRankRerank(reranker=local)
    assert post.postprocess_nodes([], query_str=QUERY) == []
    with pytest.raises(ValueError, match="query"):
        post.postprocess_nodes([])


# ---------------------------------------------------------------------------------------------- Haystack


def test_haystack_component_in_a_pipeline_with_bm25_and_serialisation(local, remote, tiny_dir):
    from haystack import Document, Pipeline
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    from headrank.integrations.haystack import HeadRankRanker

    store = InMemoryDocumentStore()
    store.write_documents([Document(id=i, content=t, meta={"n": k}) for k, (i, t) in enumerate(zip(IDS, TEXTS))])
    for component in (HeadRankRanker(model=local, top_k=3), HeadRankRanker(url=remote.url, top_k=3)):
        pipe = Pipeline()
        pipe.add_component("retriever", InMemoryBM25Retriever(store, top_k=len(TEXTS)))
        pipe.add_component("ranker", component)
        pipe.connect("retriever.documents", "ranker.documents")
        first = InMemoryBM25Retriever(store, top_k=len(TEXTS)).run(query=QUERY)["documents"]
        for fuse in (0, 0.5):  # per-call settings, through the pipeline's run inputs
            out = pipe.run({"retriever": {"query": QUERY},
                            "ranker": {"query": QUERY, "fuse_first_stage": fuse, "safety_valve": False}})
            docs = out["ranker"]["documents"]
            want = [(first[r.corpus_id].id, r.score) for r in
                    local.rank(QUERY, [d.content for d in first], fuse_first_stage=fuse, safety_valve=False)][:3]
            assert [d.id for d in docs] == [i for i, _ in want]
            assert [d.score for d in docs] == pytest.approx([s for _, s in want], abs=1e-5)
            assert all(d.meta["n"] == IDS.index(d.id) for d in docs)
        assert component.run(query=QUERY, documents=[])["documents"] == []
    built = HeadRankRanker(model=str(tiny_dir), top_k=2, fuse_first_stage=0.5, load_options={"heads": HEADS,
                                                                                                "device": "cpu"})
    again = HeadRankRanker.from_dict(built.to_dict())
    assert again.to_dict() == built.to_dict()
    pipe = Pipeline()
    pipe.add_component("ranker", built)
    yaml = pipe.dumps()
    loaded = Pipeline.loads(yaml, allowed_modules=["headrank.integrations.haystack"])
    docs = [Document(id=i, content=t) for i, t in zip(IDS, TEXTS)]
    got = loaded.run({"ranker": {"query": QUERY, "documents": docs}})["ranker"]["documents"]
    assert [d.id for d in got] == [IDS[i] for i, _ in expected(local, 0.5)[:2]]
    with pytest.raises(TypeError, match="cannot be serialised"):
        HeadRankRanker(model=local).to_dict()


# ---------------------------------------------------------------------------------------------- rerankers


def test_rerankers_adapter_returns_ranked_results(local, remote):
    from rerankers.documents import Document
    from rerankers.results import RankedResults

    from headrank.integrations.rerankers_lib import HeadRankRanker

    meta = [{"n": k} for k in range(len(TEXTS))]
    for source in (local, remote.url):
        ranker = HeadRankRanker(source, fuse_first_stage=0)
        results = ranker.rank(QUERY, TEXTS, doc_ids=IDS, metadata=meta)
        assert isinstance(results, RankedResults) and results.query == QUERY and results.has_scores
        want = expected(local, 0)
        assert [r.document.doc_id for r in results] == [IDS[i] for i, _ in want]
        assert [r.score for r in results] == pytest.approx([s for _, s in want], abs=1e-5)
        assert [r.rank for r in results] == list(range(1, len(TEXTS) + 1))
        assert results.get_result_by_docid("doc-3").document.metadata == {"n": 3}
        assert [r.document.doc_id for r in results.top_k(2)] == [IDS[i] for i, _ in want[:2]]
        fused = ranker.rank(QUERY, [Document(text=t, doc_id=i) for i, t in zip(IDS, TEXTS)], fuse_first_stage=0.5)
        assert [r.document.doc_id for r in fused] == [IDS[i] for i, _ in expected(local, 0.5)]
    ranker = HeadRankRanker(local)
    assert [r.document.doc_id for r in ranker.rank(QUERY, TEXTS)] == [i for i, _ in expected(local)]  # ids 0..n-1
    assert ranker.rank(QUERY, []).results == []
    with pytest.raises(ValueError, match="doc_ids has 1 entries for 6 documents"):
        ranker.rank(QUERY, TEXTS, doc_ids=["x"])
    with pytest.raises(TypeError, match="document 0 must be a string"):
        ranker.rank(QUERY, [{"text": "x"}])


# ---------------------------------------------------------------------------------------------- remote errors


def test_a_remote_source_reports_the_servers_message_and_an_unreachable_server(remote):
    from headrank.integrations.source import RemoteSource

    too_long = RemoteSource(remote.url)
    with pytest.raises(RuntimeError, match=r"answered 400: query is empty"):
        too_long.rank_texts("  ", TEXTS)
    nowhere = RemoteSource("http://127.0.0.1:9", timeout=5)
    with pytest.raises(ConnectionError, match="cannot reach headrank serve at http://127.0.0.1:9"):
        nowhere.rank_texts(QUERY, TEXTS)


# ---------------------------------------------------------------------------------------------- packaging


@pytest.mark.parametrize("module, package, extra", [
    ("langchain", "langchain_core", "langchain"), ("llama_index", "llama_index", "llama-index"),
    ("haystack", "haystack", "haystack"), ("rerankers_lib", "rerankers", "rerankers")])
def test_a_missing_framework_names_its_extra(module, package, extra):
    code = (f"import sys; sys.modules[{package!r}] = None\n"
            f"try:\n    import headrank.integrations.{module}\nexcept ImportError as err:\n    print(err)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert f"pip install 'headrank[{extra}]'" in out.stdout, out.stdout + out.stderr


def test_core_install_pulls_no_framework():
    from pathlib import Path

    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for framework in ("langchain", "llama", "haystack", "rerankers", "ray"):
        assert framework not in core, framework
    code = "import sys, headrank; print([m for m in sys.modules if m.split('.')[0] in " \
           "('langchain_core', 'llama_index', 'haystack', 'rerankers', 'ray')])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
