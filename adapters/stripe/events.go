package stripe

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
)

// EventsPageSize is the page size ListEvents asks for (Stripe's maximum).
const EventsPageSize = 100

// ListEvents returns the events Stripe's Events API holds that were created
// at or after since and have one of types (at most 20; none means every
// type), oldest first, each as the raw JSON object Stripe sent, byte for
// byte. Stripe keeps events for 30 days; an older since simply finds none
// from before.
//
// It pages through the whole result before returning; an *APIError stops
// it, returning nothing.
func (c *Client) ListEvents(ctx context.Context, since time.Time, types []string) ([]json.RawMessage, error) {
	if len(types) > 20 {
		return nil, fieldError("types", "at most 20 event types")
	}
	ctx = withContext(ctx)
	var all []json.RawMessage
	var after string
	for {
		params := &stripego.EventListParams{
			CreatedRange: &stripego.RangeQueryParams{GreaterThanOrEqual: since.Unix()},
		}
		for _, t := range types {
			params.Types = append(params.Types, stripego.String(t))
		}
		params.Limit = stripego.Int64(EventsPageSize)
		// One page per call: each page's raw body is what is kept, so the
		// iterator's own paging (which keeps only decoded events) is not
		// used.
		params.Single = true
		if after != "" {
			params.StartingAfter = stripego.String(after)
		}
		params.Context = ctx
		it := c.api.Events.List(params)
		if err := it.Err(); err != nil {
			return nil, wrapError("list events", err)
		}
		list := it.EventList()
		if list == nil || list.LastResponse == nil {
			return nil, wrapError("list events", fmt.Errorf("no answer body"))
		}
		var page struct {
			Data    []json.RawMessage `json:"data"`
			HasMore bool              `json:"has_more"`
		}
		if err := json.Unmarshal(list.LastResponse.RawJSON, &page); err != nil {
			return nil, wrapError("list events", fmt.Errorf("decode page: %w", err))
		}
		all = append(all, page.Data...)
		if !page.HasMore || len(page.Data) == 0 {
			break
		}
		var last struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(page.Data[len(page.Data)-1], &last); err != nil || last.ID == "" {
			return nil, wrapError("list events", fmt.Errorf("event without id on a page with more"))
		}
		if last.ID == after {
			// A server that ignores starting_after would page forever.
			return nil, wrapError("list events", fmt.Errorf("paging does not advance past %s", after))
		}
		after = last.ID
	}
	// Stripe lists newest first; decisions are better taken in the order
	// things happened.
	slices.Reverse(all)
	return all, nil
}
