"""Admin / AsyncAdmin: topics, configs, groups, offsets, records, cluster (issue 14)."""
