package stripe

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain"
)

// TestChargeRefundedListsRefunds: API versions before 2022-11-15 embed the
// charge's refunds in charge.refunded; each becomes a refund fact of the
// charge, with the charge's ids where the entry has none.
func TestChargeRefundedListsRefunds(t *testing.T) {
	at := time.Date(2027, 1, 10, 12, 0, 0, 0, time.UTC)
	raw, err := BuildEvent(EventChargeRefunded, TestBooking{ID: 42, PaymentIntentID: "pi_3list", ChargeID: "ch_3list", Amount: 36000,
		Currency: "eur", AmountRefunded: 30000}, at)
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	ev["api_version"] = "2020-08-27"
	ev["data"].(map[string]any)["object"].(map[string]any)["refunds"] = map[string]any{
		"object": "list", "has_more": false, "url": "/v1/charges/ch_3list/refunds",
		"data": []any{
			map[string]any{"id": "re_1", "object": "refund", "amount": 10000, "currency": "eur", "status": "succeeded",
				"charge": "ch_3list", "payment_intent": "pi_3list", "metadata": map[string]any{}},
			map[string]any{"id": "re_2", "object": "refund", "amount": 20000, "currency": "eur", "status": "pending",
				"charge": "ch_3list", "payment_intent": nil, "metadata": map[string]any{}},
		},
	}
	raw, _ = json.Marshal(ev)
	d, err := ParseDelivery(raw, "", "webhook", at)
	if err != nil {
		t.Fatal(err)
	}
	c := d.ChargeRefund
	if c.ChargeID != "ch_3list" || c.PaymentIntentID != "pi_3list" || c.AmountRefunded != 30000 || len(c.Refunds) != 2 {
		t.Fatalf("charge refund %+v", c)
	}
	if r := c.Refunds[1]; r.ID != "re_2" || r.Amount != 20000 || r.Status != domain.RefundStatusPending || r.ChargeID != "ch_3list" ||
		r.StripeEventType != EventChargeRefunded {
		t.Errorf("second refund %+v", r)
	}
}

// TestMoneyObjectsChecked: what ParseEvent rejects in the objects of the
// refund, charge and dispute types, naming the field.
func TestMoneyObjectsChecked(t *testing.T) {
	at := time.Date(2027, 1, 10, 12, 0, 0, 0, time.UTC)
	b := TestBooking{ID: 42, PaymentIntentID: "pi_3chk", ChargeID: "ch_3chk", Amount: 36000, Currency: "eur"}
	tests := []struct {
		typ   string
		edit  func(obj map[string]any)
		field string
	}{
		{EventRefundCreated, func(o map[string]any) { o["amount"] = -1 }, "data.object.amount"},
		{EventRefundCreated, func(o map[string]any) { o["currency"] = "euro" }, "data.object.currency"},
		{EventRefundCreated, func(o map[string]any) { o["charge"] = 7 }, "data.object.charge"},
		{EventRefundCreated, func(o map[string]any) { o["failure_reason"] = "a\u0000b" }, "data.object.failure_reason"},
		{EventRefundCreated, func(o map[string]any) { o["object"] = "charge" }, "data.object.object"},
		{EventChargeRefunded, func(o map[string]any) { o["amount_refunded"] = -3 }, "data.object.amount_refunded"},
		{EventChargeRefunded, func(o map[string]any) {
			o["refunds"] = map[string]any{"data": []any{map[string]any{"object": "refund", "amount": 1, "currency": "eur"}}}
		}, "data.object.refunds.data[0].id"},
		{EventChargeDisputeCreated, func(o map[string]any) { o["reason"] = 5 }, "data.object.reason"},
		{EventChargeDisputeCreated, func(o map[string]any) { o["evidence_details"] = map[string]any{"due_by": "soon"} }, "data.object.evidence_details.due_by"},
	}
	for _, tt := range tests {
		t.Run(tt.typ+" "+tt.field, func(t *testing.T) {
			raw, err := BuildEvent(tt.typ, b, at)
			if err != nil {
				t.Fatal(err)
			}
			var ev map[string]any
			if err := json.Unmarshal(raw, &ev); err != nil {
				t.Fatal(err)
			}
			tt.edit(ev["data"].(map[string]any)["object"].(map[string]any))
			raw, _ = json.Marshal(ev)
			_, err = ParseEvent(raw)
			var fe *domain.FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, tt.field) {
				t.Errorf("ParseEvent: %v, want an error naming %s", err, tt.field)
			}
		})
	}
}
