"""Sphinx helpers for the site built from nbdev's `_proc/` notebooks."""
import re

def pandoc_slug(title:str) -> str:
    "Heading anchor as Pandoc (Quarto) makes it, so nbdev's links `page.html#hfengine.generate` resolve unchanged."
    s = re.sub(r'[^\w\s.-]', '', title.strip().lower())
    s = re.sub(r'\s+', '-', s)
    s = re.sub(r'^[^a-z]+', '', s)  # an identifier starts at the first letter
    return s or 'section'
