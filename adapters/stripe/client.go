package stripe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/booking-ledger/ledger/domain"
)

// ClientConfig configures a Client. Only SecretKey is required; Timeout takes
// its default when zero. MaxNetworkRetries is taken as given: zero means
// stripe-go retries nothing.
type ClientConfig struct {
	// SecretKey is the account's secret ("sk_...") or restricted ("rk_...")
	// API key.
	SecretKey string
	// BaseURL is the API base, e.g. "http://127.0.0.1:12111" for a local
	// stripe-mock; "" means Stripe's (https://api.stripe.com).
	BaseURL string
	// Timeout bounds one HTTP request to Stripe, each network retry
	// included separately (default 15 s).
	Timeout time.Duration
	// MaxNetworkRetries is how often stripe-go itself retries a request
	// that failed in a way it knows to be safe to retry: no answer, 409,
	// 503, 429 lock timeouts, and 5xx of GETs. It reuses the request's
	// idempotency key. POSTs answered 500 are not retried by stripe-go,
	// because Stripe replays a saved 500 for the same key.
	MaxNetworkRetries int
	// Logger receives stripe-go's log lines (requests at debug level,
	// failures at warn); nil discards them.
	Logger *slog.Logger
}

func (c *ClientConfig) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a configuration that cannot work. It never prints the
// key.
func (c ClientConfig) Validate() error {
	var errs []error
	if !strings.HasPrefix(c.SecretKey, "sk_") && !strings.HasPrefix(c.SecretKey, "rk_") {
		errs = append(errs, errors.New("stripe client: the secret key must start with sk_ or rk_"))
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("stripe client: API base URL %q is not an http(s) URL", c.BaseURL))
		}
	}
	if c.Timeout < 0 || c.MaxNetworkRetries < 0 {
		errs = append(errs, errors.New("stripe client: timeout and network retries must not be negative"))
	}
	return errors.Join(errs...)
}

// Client calls Stripe's API through stripe-go v76 with an explicit base URL,
// request timeout and retry policy. It is safe for concurrent use. Every
// error it returns is an *APIError.
type Client struct {
	api *client.API
}

// NewClient returns a Client for cfg, or cfg's validation error.
func NewClient(cfg ClientConfig) (*Client, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	retries := int64(cfg.MaxNetworkRetries)
	bc := &stripego.BackendConfig{
		HTTPClient:        &http.Client{Timeout: cfg.Timeout},
		MaxNetworkRetries: &retries,
		LeveledLogger:     leveledLogger{cfg.Logger},
		EnableTelemetry:   stripego.Bool(false),
	}
	if cfg.BaseURL != "" {
		bc.URL = stripego.String(strings.TrimSuffix(cfg.BaseURL, "/"))
	}
	backend := stripego.GetBackendWithConfig(stripego.APIBackend, bc)
	api := &client.API{}
	api.Init(cfg.SecretKey, &stripego.Backends{API: backend, Connect: backend, Uploads: backend})
	return &Client{api: api}, nil
}

// APIError is a failed call to Stripe's API: Stripe's error answer, or no
// usable answer at all (HTTPStatus 0: network failure, timeout, canceled
// context, a body that is not Stripe's JSON).
type APIError struct {
	// Op names the call, e.g. "create refund".
	Op string
	// HTTPStatus is the answer's status, 0 when there was none.
	HTTPStatus int
	// Type and Code are Stripe's error type ("invalid_request_error") and
	// code ("charge_already_refunded"), Message its message, RequestID the
	// answer's Request-Id.
	Type, Code, Message, RequestID string
	// Err is stripe-go's error.
	Err error
}

// Error describes the failure without the API key or request body.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("stripe: ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	if e.HTTPStatus == 0 {
		b.WriteString(e.Err.Error())
		return b.String()
	}
	fmt.Fprintf(&b, "%d", e.HTTPStatus)
	for _, s := range []string{e.Type, e.Code} {
		if s != "" {
			b.WriteString(" ")
			b.WriteString(s)
		}
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request ")
		b.WriteString(e.RequestID)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns stripe-go's error.
func (e *APIError) Unwrap() error { return e.Err }

// Is makes a 404 answer match domain.ErrNotFound.
func (e *APIError) Is(target error) bool {
	return target == domain.ErrNotFound && e.HTTPStatus == http.StatusNotFound
}

// Permanent reports whether repeating the same request cannot succeed: a
// 4xx answer other than 401/403 (a key problem the operator fixes), 409
// (a concurrent request with the same idempotency key) and 429 (rate limit,
// lock timeout). No answer and 5xx answers are transient.
func (e *APIError) Permanent() bool {
	switch {
	case e.HTTPStatus < 400 || e.HTTPStatus >= 500:
		return false
	case e.HTTPStatus == http.StatusUnauthorized, e.HTTPStatus == http.StatusForbidden,
		e.HTTPStatus == http.StatusConflict, e.HTTPStatus == http.StatusTooManyRequests:
		return false
	}
	return true
}

// FailureCode is Stripe's error code, or its error type when the answer has
// no code, or "network_error" when there was no usable answer.
func (e *APIError) FailureCode() string {
	switch {
	case e.Code != "":
		return e.Code
	case e.Type != "":
		return e.Type
	case e.HTTPStatus == 0:
		return "network_error"
	}
	return fmt.Sprintf("http_%d", e.HTTPStatus)
}

// FailureMessage is Stripe's message, or the error's text when there was no
// usable answer.
func (e *APIError) FailureMessage() string {
	if e.Message != "" {
		return e.Message
	}
	return e.Error()
}

// HTTPStatusCode is HTTPStatus.
func (e *APIError) HTTPStatusCode() int { return e.HTTPStatus }

// ProviderRequestID is RequestID, the answer's Request-Id.
func (e *APIError) ProviderRequestID() string { return e.RequestID }

// IsPermanent reports whether err is an *APIError that is Permanent.
func IsPermanent(err error) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.Permanent()
}

func wrapError(op string, err error) error {
	if err == nil {
		return nil
	}
	e := &APIError{Op: op, Err: err}
	var se *stripego.Error
	if errors.As(err, &se) {
		e.HTTPStatus = se.HTTPStatusCode
		e.Type = string(se.Type)
		e.Code = string(se.Code)
		e.Message = se.Msg
		e.RequestID = se.RequestID
	}
	return e
}

// leveledLogger hands stripe-go's log lines to slog. stripe-go logs every
// request at info level, which is debug for this service, and every failure
// at error level, which callers handle and log themselves.
type leveledLogger struct{ l *slog.Logger }

func (l leveledLogger) Debugf(format string, v ...any) { l.l.Debug(fmt.Sprintf(format, v...)) }
func (l leveledLogger) Infof(format string, v ...any)  { l.l.Debug(fmt.Sprintf(format, v...)) }
func (l leveledLogger) Warnf(format string, v ...any)  { l.l.Warn(fmt.Sprintf(format, v...)) }
func (l leveledLogger) Errorf(format string, v ...any) { l.l.Warn(fmt.Sprintf(format, v...)) }

// withContext returns ctx, or context.Background for a nil one.
func withContext(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}
