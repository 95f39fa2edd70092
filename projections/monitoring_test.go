package projections

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain"
)

// The monitoring fold against tables computed by hand for a small scripted
// history, so that the expectations do not come from MonitoringDeltas
// itself: refunds, failures by code, conflicts by resource, cancellations
// by reason, and a UTC day boundary (23:30 in UTC-2 is the next UTC day).

func TestFoldMonitoringAgainstHandWrittenTables(t *testing.T) {
	day1 := time.Date(2027, 1, 10, 23, 59, 59, 0, time.UTC)
	day2 := time.Date(2027, 1, 11, 0, 0, 0, 0, time.UTC)
	minus2 := time.FixedZone("UTC-2", -2*3600)
	lateDay1InMinus2 := time.Date(2027, 1, 10, 23, 30, 0, 0, minus2) // 2027-01-11 01:30 UTC
	at := func(pos int64, when time.Time, e domain.Event) Envelope {
		return Envelope{Position: pos, StreamID: 1, RecordedAt: when, Event: e}
	}
	events := []Envelope{
		at(1, day1, domain.BookingRequested{BookingID: 1}),
		at(2, day2, domain.BookingRequested{BookingID: 2}),
		at(3, lateDay1InMinus2, domain.BookingRequested{BookingID: 3}),
		at(4, day1, domain.PaymentSucceeded{Amount: 1000, Currency: "eur"}),
		at(5, day1, domain.BookingConfirmed{}),
		at(6, day2, domain.PaymentSucceeded{Amount: 2500, Currency: "eur"}),
		at(7, day2, domain.PaymentSucceeded{Amount: 700, Currency: "usd"}),
		at(8, day2, domain.AvailabilityConflict{ResourceID: "room"}),
		at(9, day2, domain.BookingCancelled{Reason: domain.CancelAvailabilityConflict}),
		at(10, day2, domain.RefundRequested{Amount: 2500, Currency: "eur"}),
		at(11, day2, domain.RefundIssued{RefundID: "re_1", Amount: 2500, Currency: "eur"}),
		at(12, day1, domain.PaymentFailed{FailureCode: "card_declined"}),
		at(13, day2, domain.PaymentFailed{FailureCode: "card_declined"}),
		at(14, day2, domain.PaymentFailed{FailureCode: "expired_card"}),
		at(15, day2, domain.BookingCancelled{Reason: domain.CancelPaymentFailed}),
		at(16, day2, domain.BookingCancelled{Reason: domain.CancelPaymentFailed}),
		at(17, day2, domain.CheckoutSessionOpened{SessionID: "cs_1"}),
		at(18, day2, domain.PaymentMismatch{Amount: 1}),
		at(19, day2, domain.AvailabilityConflict{ResourceID: "room"}),
		at(20, day1, domain.AvailabilityConflict{ResourceID: "suite"}),
		at(21, day2, nil),
	}
	m, skipped := FoldMonitoring(events)
	if len(skipped) != 1 || skipped[0].Position != 21 {
		t.Errorf("skipped %v, want the event without payload", skipped)
	}
	row := func(v []int64, key ...string) CounterRow { return CounterRow{Key: key, Values: v} }
	want := map[string][]CounterRow{
		TableRequestsPerDay:      {row([]int64{1}, "2027-01-10"), row([]int64{2}, "2027-01-11")},
		TableConfirmationsPerDay: {row([]int64{1}, "2027-01-10")},
		TableCancellationsByReason: {
			row([]int64{1}, string(domain.CancelAvailabilityConflict)),
			row([]int64{2}, string(domain.CancelPaymentFailed)),
		},
		TablePaymentFailures: {
			row([]int64{1}, "2027-01-10", "card_declined"),
			row([]int64{1}, "2027-01-11", "card_declined"),
			row([]int64{1}, "2027-01-11", "expired_card"),
		},
		TableAvailabilityConflicts: {row([]int64{1}, "2027-01-10", "suite"), row([]int64{2}, "2027-01-11", "room")},
		// payments, gross, refunds, refunded
		TableRevenueByCurrency: {row([]int64{2, 3500, 1, 2500}, "eur"), row([]int64{1, 700, 0, 0}, "usd")},
		TableEventsByType: {
			row([]int64{3}, domain.EventAvailabilityConflict),
			row([]int64{3}, domain.EventBookingCancelled),
			row([]int64{1}, domain.EventBookingConfirmed),
			row([]int64{3}, domain.EventBookingRequested),
			row([]int64{1}, domain.EventCheckoutSessionOpened),
			row([]int64{3}, domain.EventPaymentFailed),
			row([]int64{1}, domain.EventPaymentMismatch),
			row([]int64{3}, domain.EventPaymentSucceeded),
			row([]int64{1}, domain.EventRefundIssued),
			row([]int64{1}, domain.EventRefundRequested),
		},
	}
	for _, table := range MonitoringTables {
		if got := m.Rows(table.Name); !reflect.DeepEqual(got, want[table.Name]) {
			t.Errorf("%s:\n got %v\nwant %v", table.Name, got, want[table.Name])
		}
	}
	if got := m.Rows("no_such_table"); len(got) != 0 {
		t.Errorf("unknown table: %v", got)
	}
}

// TestMonitoringRowsAreCopies: a caller changing what Rows returned does
// not change the state.
func TestMonitoringRowsAreCopies(t *testing.T) {
	var m Monitoring
	if err := m.Apply(Envelope{Event: domain.PaymentSucceeded{Amount: 5, Currency: "eur"}}); err != nil {
		t.Fatal(err)
	}
	rows := m.Rows(TableRevenueByCurrency)
	rows[0].Values[1], rows[0].Key[0] = 99, "xxx"
	if again := m.Rows(TableRevenueByCurrency); again[0].Values[1] != 5 || again[0].Key[0] != "eur" {
		t.Errorf("state changed through Rows: %v", again)
	}
}

func TestMonitoringDeltasRejects(t *testing.T) {
	tests := []struct {
		name string
		e    domain.Event
	}{
		{"no payload", nil},
		{"unknown type", unknownEvent{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Monitoring
			if err := m.Apply(Envelope{Position: 7, Event: tt.e}); !errors.Is(err, domain.ErrInvalid) {
				t.Fatalf("Apply: %v, want ErrInvalid", err)
			}
			if got := m.Rows(TableEventsByType); len(got) != 0 {
				t.Errorf("a rejected event was counted: %v", got)
			}
		})
	}
}

type unknownEvent struct{}

func (unknownEvent) EventType() string  { return "Unknown" }
func (unknownEvent) SchemaVersion() int { return 1 }

func TestCounterTableByName(t *testing.T) {
	for _, table := range MonitoringTables {
		got, ok := CounterTableByName(table.Name)
		if !ok || !reflect.DeepEqual(got, table) {
			t.Errorf("CounterTableByName(%s) = %v, %v", table.Name, got, ok)
		}
	}
	if _, ok := CounterTableByName("monitoring_nothing"); ok {
		t.Error("found an unknown table")
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		name string
		want Info
		ok   bool
	}{
		{BookingsName, Info{Name: BookingsName, Version: BookingsVersion, Inline: true}, true},
		{MonitoringName, Info{Name: MonitoringName, Version: MonitoringVersion, Inline: false}, true},
		{"other", Info{}, false},
	}
	for _, tt := range tests {
		if got, ok := Lookup(tt.name); got != tt.want || ok != tt.ok {
			t.Errorf("Lookup(%s) = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// TestMonitoringDeltasKnowsEveryEventType: an event type the monitoring
// projection does not know would be dead-lettered by its subscriber, which
// then stops counting that booking's money (as RefundFailed once was).
func TestMonitoringDeltasKnowsEveryEventType(t *testing.T) {
	for _, typ := range domain.EventTypes() {
		e, ok := sampleEvents[typ]
		if !ok {
			t.Fatalf("no sample event of type %s", typ)
		}
		if _, err := MonitoringDeltas(Envelope{Position: 1, StreamID: 7, RecordedAt: time.Now(), Event: e}); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
}

// TestMonitoringCountsEachRefundOnce: the revenue table sums the changes
// the money events made, so a refund seen through two event types, and a
// refund that failed, add up to the booking's refunded amount.
func TestMonitoringCountsEachRefundOnce(t *testing.T) {
	change := func(v int64) *int64 { return &v }
	var m Monitoring
	for i, e := range []domain.Event{
		domain.PaymentSucceeded{PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur", Source: domain.SourceWebhook},
		domain.PaymentRefunded{RefundID: "re_1", Amount: 10000, Currency: "eur", Status: domain.RefundStatusSucceeded, RefundedChange: 10000},
		domain.PaymentRefundedTotal{ChargeID: "ch_1", AmountRefunded: 10000, Currency: "eur", RefundedChange: 0},
		domain.RefundIssued{RefundID: "re_2", PaymentIntentID: "pi_1", Amount: 5000, Currency: "eur", RefundedChange: change(5000)},
		domain.RefundFailed{RefundID: "re_2", PaymentIntentID: "pi_1", Amount: 5000, Currency: "eur", Reason: domain.RefundExternal,
			FailureCode: "failed", RefundedChange: -5000},
		domain.RefundIssued{RefundID: "re_0", PaymentIntentID: "pi_1", Amount: 700, Currency: "eur"}, // recorded before refunded_change
	} {
		if err := m.Apply(Envelope{Position: int64(i + 1), StreamID: 7, RecordedAt: time.Now(), Event: e}); err != nil {
			t.Fatal(err)
		}
	}
	rows := m.Rows(TableRevenueByCurrency)
	if len(rows) != 1 || fmt.Sprint(rows[0].Values) != "[1 36000 3 10700]" {
		t.Errorf("revenue %+v, want 1 payment of 36000, 3 refunds giving back 10700", rows)
	}
}
