"""Choosing and training what a preset ships: head selection (``selection``, ``weighting``), queries written
by the LLM (``synthetic``), re-choosing heads on new data (``adapt``), preference alignment (``align``),
relevance calibration (``calibrate``), model cards (``card``) and packaging a preset (``build``)."""
