"""Stream plumbing: partitioned input streams, producer, partition leases, worker loop."""
