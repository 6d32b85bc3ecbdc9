"""A tiny Django project for benchmarking django-bgjobs: settings and the no-op job."""
