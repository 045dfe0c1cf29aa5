"""Text to ranking, one step per module: ``prompt`` (the listwise prompt) -> ``models`` / ``quantize`` /
``checkpoint`` (loading) -> ``capture`` (one truncated forward) -> ``heads`` (head sets) -> ``mass`` (per-head
passage mass, the combination rules) -> ``rule`` (fusion and the safety valve; ``fusion``, ``relevance``) ->
``results`` / ``ranker`` (``HeadRanker``) -> ``explain`` (token-level terms). ``observe`` reads every head of
a pass for choosing and training; ``presets`` says which shipped presets exist."""
