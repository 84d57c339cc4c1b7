"""Tokenizers: byte-level BPE trained on the book's captions, with openai/CLIP's
conventions (`bpe`)."""
