"""What developers expose: DDP methods now; Collections, Publications and the live-query
engine (issue 5) next. Nothing is callable or published unless registered here."""
