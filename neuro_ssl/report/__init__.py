"""Rendering of files other steps wrote: saliency montages, the review page, plots."""
