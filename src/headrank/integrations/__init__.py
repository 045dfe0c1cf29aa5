"""HeadRank inside the pipeline frameworks users already run, each behind its own extra:

- ``headrank.integrations.langchain``: ``HeadRankCompressor``, a LangChain ``BaseDocumentCompressor``
  (``pip install 'headrank[langchain]'``);
- ``headrank.integrations.llama_index``: ``HeadRankRerank``, a LlamaIndex node postprocessor
  (``pip install 'headrank[llama-index]'``);
- ``headrank.integrations.haystack``: ``HeadRankRanker``, a Haystack ``@component``
  (``pip install 'headrank[haystack]'``);
- ``headrank.integrations.rerankers_lib``: ``HeadRankRanker`` for code that expects a ``rerankers`` ranker
  (``pip install 'headrank[rerankers]'``).

Each takes a preset name or model path (loaded in this process), a loaded ``HeadRanker``, or the URL of a running
``headrank serve`` (``source``: one code path for all four), keeps the documents' ids and metadata, and passes
``fuse_first_stage`` / ``safety_valve`` through. Nothing here is imported by ``import headrank``.
"""
