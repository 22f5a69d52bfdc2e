"""Process handling: fork safety, tracked backends, spawning, and noticing the parent's death."""
