"""Comparison rerankers that share HeadRank's models and harness: generative listwise, pointwise yes/no."""
