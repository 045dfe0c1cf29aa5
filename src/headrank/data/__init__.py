"""Text in and out, below the model: every file format (``formats``), the benchmarks and their readers
(``benchmarks``) and the BM25 first stage (``bm25``). Nothing here loads a model."""
