"""hookstream's numeric core: decode -> mel frames -> attention scorer -> highlight window.

Nothing in this package imports Kafka, Faust or Prometheus.
"""
