package stripe_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
)

func TestCheckWebhookEndpoint(t *testing.T) {
	good := stripe.WebhookEndpoint{ID: "we_1", URL: "https://l.example.com/webhooks/stripe/", Status: "enabled",
		APIVersion: stripe.APIVersion, EnabledEvents: append([]string(nil), stripe.HandledEventTypes...)}
	tests := []struct {
		name string
		edit func(*stripe.WebhookEndpoint)
		want []string // fragments, one per problem
	}{
		{"fits", func(*stripe.WebhookEndpoint) {}, nil},
		{"a type missing", func(e *stripe.WebhookEndpoint) { e.EnabledEvents = e.EnabledEvents[1:] },
			[]string{"missing types (never delivered): " + stripe.HandledEventTypes[0]}},
		{"an extra type", func(e *stripe.WebhookEndpoint) { e.EnabledEvents = append(e.EnabledEvents, "invoice.paid") },
			[]string{"extra types (answered \"ignored\"): invoice.paid"}},
		{"every type", func(e *stripe.WebhookEndpoint) { e.EnabledEvents = []string{"*"} }, []string{"every type enabled"}},
		{"disabled", func(e *stripe.WebhookEndpoint) { e.Status = "disabled" }, []string{`status "disabled"`}},
		{"another URL", func(e *stripe.WebhookEndpoint) { e.URL = "https://old.example.com/hook" }, []string{"URL https://old.example.com/hook"}},
		{"another API version", func(e *stripe.WebhookEndpoint) { e.APIVersion = "2020-08-27" }, []string{"API version 2020-08-27"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := good
			e.EnabledEvents = append([]string(nil), good.EnabledEvents...)
			tt.edit(&e)
			got := stripe.CheckWebhookEndpoint(e, good.URL)
			if len(got) != len(tt.want) {
				t.Fatalf("problems %q, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %q, want %q", got[i], w)
				}
			}
		})
	}
}

// TestWebhookEndpointAgainstStripeMock: the create and list requests are
// valid for Stripe's OpenAPI specification (stripe-mock answers 400
// otherwise), and the answers are read.
func TestWebhookEndpointAgainstStripeMock(t *testing.T) {
	c, err := stripe.NewClient(stripe.ClientConfig{SecretKey: "sk_test_123", BaseURL: stripetest.MockURL(t), Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e, err := c.CreateWebhookEndpoint(ctx, "https://ledger.example.com/webhooks/stripe/")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if !strings.HasPrefix(e.ID, "we_") || e.URL != "https://ledger.example.com/webhooks/stripe/" {
		t.Errorf("created %+v", e)
	}
	if _, err := c.CreateWebhookEndpoint(ctx, "ftp://nowhere"); err == nil {
		t.Error("a non-http URL was sent")
	}
	list, err := c.ListWebhookEndpoints(ctx)
	if err != nil || len(list) == 0 || !strings.HasPrefix(list[0].ID, "we_") {
		t.Errorf("list %+v, %v", list, err)
	}
}
