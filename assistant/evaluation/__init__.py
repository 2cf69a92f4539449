"""`assistant eval`: closed-book vs RAG vs adapter on a gold Q&A set (run, metrics, report, records)."""
