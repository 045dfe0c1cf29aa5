"""HeadRank."""
