"""The Definitions (jobs, sensors, partitions, resources per environment) and the `sslpipe` command."""
