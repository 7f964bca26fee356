"""The sandbox's Kubernetes side: an API server and a simulated cluster."""
