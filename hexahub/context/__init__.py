"""Code context (C2): repositories, indexing, chunking, embeddings, stores, search, answers."""
