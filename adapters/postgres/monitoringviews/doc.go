// Package monitoringviews reads what the monitoring projection and the
// log's SQL views hold, for GET /monitoring/summary and /metrics: the
// views' rows as JSON-ready maps, and Prometheus collectors that query them
// at each scrape. The projection itself is kept by adapters/postgres/readmodels.
package monitoringviews
