package eventstore

import wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"

// GroupQuery is ReadGroup's statement for group, limit events at a time.
func GroupQuery(group string, limit int) (string, []any, error) {
	q, err := eventsSchema{batchSize: limit}.SelectQuery(wsql.SelectQueryParams{Topic: EventsTopic, ConsumerGroup: group, OffsetsAdapter: unlockedOffsets{offsetsAdapter()}})
	return q.Query, q.Args, err
}
