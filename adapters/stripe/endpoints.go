package stripe

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	stripego "github.com/stripe/stripe-go/v76"
)

// WebhookEndpoint is a webhook endpoint registered in Stripe, as the ledger
// reads it. Secret is only known in the answer to its creation.
type WebhookEndpoint struct {
	ID, URL, Status, APIVersion, Description string
	EnabledEvents                            []string
	Livemode                                 bool
	Secret                                   string
}

// endpointDescription marks the endpoints this command creates.
const endpointDescription = "booking-ledger"

// CreateWebhookEndpoint registers endpointURL in Stripe with exactly
// HandledEventTypes and the API version the ledger is built and tested
// with (stripe-go's pinned version), and returns it with its signing
// secret (shown by Stripe this once).
func (c *Client) CreateWebhookEndpoint(ctx context.Context, endpointURL string) (WebhookEndpoint, error) {
	if err := checkEndpointURL(endpointURL); err != nil {
		return WebhookEndpoint{}, err
	}
	params := &stripego.WebhookEndpointParams{
		URL:         stripego.String(endpointURL),
		APIVersion:  stripego.String(APIVersion),
		Description: stripego.String(endpointDescription),
	}
	for _, t := range HandledEventTypes {
		params.EnabledEvents = append(params.EnabledEvents, stripego.String(t))
	}
	params.Context = withContext(ctx)
	e, err := c.api.WebhookEndpoints.New(params)
	if err != nil {
		return WebhookEndpoint{}, wrapError("create webhook endpoint", err)
	}
	return endpointFrom(e), nil
}

// ListWebhookEndpoints returns every webhook endpoint of the account.
func (c *Client) ListWebhookEndpoints(ctx context.Context) ([]WebhookEndpoint, error) {
	params := &stripego.WebhookEndpointListParams{}
	params.Limit = stripego.Int64(100)
	params.Context = withContext(ctx)
	it := c.api.WebhookEndpoints.List(params)
	var out []WebhookEndpoint
	for it.Next() {
		out = append(out, endpointFrom(it.WebhookEndpoint()))
	}
	if err := it.Err(); err != nil {
		return nil, wrapError("list webhook endpoints", err)
	}
	return out, nil
}

func endpointFrom(e *stripego.WebhookEndpoint) WebhookEndpoint {
	return WebhookEndpoint{ID: e.ID, URL: e.URL, Status: e.Status, APIVersion: e.APIVersion, Description: e.Description,
		EnabledEvents: e.EnabledEvents, Livemode: e.Livemode, Secret: e.Secret}
}

func checkEndpointURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
		return fieldError("url", "must be the http(s) URL of the ledger's webhook, e.g. https://ledger.example.com/webhooks/stripe/")
	}
	return nil
}

// CheckWebhookEndpoint compares a registered endpoint with what the ledger
// needs: every handled type enabled (or "*"), no other type (they cost a
// delivery each and are answered "ignored"), the endpoint enabled, pointing
// at wantURL when given, rendered in the API version the ledger is tested
// with. It returns the problems found, none when the endpoint fits.
func CheckWebhookEndpoint(e WebhookEndpoint, wantURL string) []string {
	var problems []string
	all := slices.Contains(e.EnabledEvents, "*")
	var missing, extra []string
	for _, t := range HandledEventTypes {
		if !all && !slices.Contains(e.EnabledEvents, t) {
			missing = append(missing, t)
		}
	}
	for _, t := range e.EnabledEvents {
		if t != "*" && !slices.Contains(HandledEventTypes, t) {
			extra = append(extra, t)
		}
	}
	if len(missing) > 0 {
		problems = append(problems, "missing types (never delivered): "+strings.Join(missing, ", "))
	}
	if all {
		problems = append(problems, "every type enabled (*): each unhandled one costs a delivery answered \"ignored\"")
	}
	if len(extra) > 0 {
		problems = append(problems, "extra types (answered \"ignored\"): "+strings.Join(extra, ", "))
	}
	if e.Status != "enabled" {
		problems = append(problems, fmt.Sprintf("status %q: Stripe sends nothing", e.Status))
	}
	if wantURL != "" && e.URL != wantURL {
		problems = append(problems, fmt.Sprintf("URL %s, want %s", e.URL, wantURL))
	}
	if e.APIVersion != "" && e.APIVersion != APIVersion {
		problems = append(problems, fmt.Sprintf("API version %s; the ledger is tested with %s (events of any version are accepted)", e.APIVersion, APIVersion))
	}
	return problems
}
