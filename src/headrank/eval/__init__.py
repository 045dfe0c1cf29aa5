"""Measuring rerankers: one score function per method (``scorers``), benchmark runs with ir-measures
(``evaluate``), paired comparisons (``compare``) and speed (``bench``)."""
