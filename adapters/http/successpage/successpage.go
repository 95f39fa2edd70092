// Package successpage is the page a customer lands on after Stripe
// Checkout (GET /bookings/{id}/success): its JSON answer, its message and
// its small HTML rendering.
package successpage

import (
	"fmt"
	"html/template"
	"io"
	"strings"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// Answer is the JSON of GET /bookings/{id}/success. The page needs
// no token, so it shows a booking's statuses only to the holder of the
// booking's own Checkout Session id; without one (the cancel URL) it shows
// nothing about the booking.
type Answer struct {
	BookingID     int64                `json:"booking_id"`
	Status        domain.Status        `json:"status,omitempty"`
	PaymentStatus domain.PaymentStatus `json:"payment_status,omitempty"`
	// Checked is true when the session was retrieved from Stripe.
	Checked               bool   `json:"checked"`
	SessionID             string `json:"session_id,omitempty"`
	CheckoutStatus        string `json:"checkout_status,omitempty"`
	CheckoutPaymentStatus string `json:"checkout_payment_status,omitempty"`
	Amount                int64  `json:"amount,omitempty"`
	Currency              string `json:"currency,omitempty"`
	// Outcome is what the check did: "recorded" (events were appended
	// now), "already_recorded" (the webhook or an earlier visit came
	// first), "not_paid" or "not_checked".
	Outcome string `json:"outcome"`
}

// View is what the page shows.
type View struct {
	Answer
	Message string
	Price   string
}

// Message tells the customer where the booking and its payment stand.
func Message(a Answer) string {
	switch {
	case a.Outcome == string(app.RedirectNotChecked):
		return "No payment was taken. You can close this page."
	case a.Status == domain.StatusConfirmed && a.PaymentStatus == domain.PaymentStatusPaid:
		return "Payment received. Your booking is confirmed."
	case a.Status == domain.StatusCancelled && a.PaymentStatus == domain.PaymentStatusRefunded:
		return "Your booking was cancelled and your payment has been refunded."
	case a.Status == domain.StatusCancelled && a.PaymentStatus == domain.PaymentStatusPaid:
		return "Your payment arrived after these dates were taken. The booking is cancelled and your payment will be refunded."
	case a.Status == domain.StatusCancelled:
		return "This booking is cancelled."
	case a.CheckoutStatus == "complete" && a.CheckoutPaymentStatus == "unpaid":
		return "Your payment is being processed. This page shows the result once your bank confirms it."
	default:
		return "We have not received your payment yet."
	}
}

// zeroDecimal are the currencies Stripe counts in whole units.
var zeroDecimal = map[string]bool{"bif": true, "clp": true, "djf": true, "gnf": true, "jpy": true, "kmf": true,
	"krw": true, "mga": true, "pyg": true, "rwf": true, "ugx": true, "vnd": true, "vuv": true, "xaf": true, "xof": true, "xpf": true}

// FormatMoney writes an amount in the currency's minor units as
// "12.34 EUR" ("1234 JPY" for a zero-decimal currency).
func FormatMoney(amount int64, currency string) string {
	if currency == "" {
		return ""
	}
	code := strings.ToUpper(currency)
	if zeroDecimal[currency] {
		return fmt.Sprintf("%d %s", amount, code)
	}
	return fmt.Sprintf("%d.%02d %s", amount/100, amount%100, code)
}

var page = template.Must(template.New("success").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Booking {{.BookingID}}</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem">
<h1>Booking {{.BookingID}}</h1>
<p>{{.Message}}</p>
<dl>
{{- if .Status}}
<dt>Status</dt><dd id="status">{{.Status}}</dd>
<dt>Payment</dt><dd id="payment_status">{{.PaymentStatus}}</dd>
{{- end}}
{{- if .Price}}
<dt>Amount</dt><dd id="amount">{{.Price}}</dd>
{{- end}}
</dl>
</body>
</html>
`))

// Write renders the HTML page of a.
func Write(w io.Writer, a Answer) error {
	return page.Execute(w, View{Answer: a, Message: Message(a), Price: FormatMoney(a.Amount, a.Currency)})
}
