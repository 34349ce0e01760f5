"""Prefect flows (build-geopixeld): orchestration only; the work lives in pipeline/ and annotations/."""
