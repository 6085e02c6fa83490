"""The demo's bookstore app: authors and books, captured into the change log."""
