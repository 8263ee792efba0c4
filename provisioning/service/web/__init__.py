"""HTTP plumbing every API of the service shares (request bodies)."""
