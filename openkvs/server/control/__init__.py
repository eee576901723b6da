"""The control plane (service ``kinesisvideo``): streams, data endpoints and tags."""
