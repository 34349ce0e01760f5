"""The bundled GeoPixel model: architecture, data loader, trainer and metrics."""
